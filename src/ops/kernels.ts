// The three hot operations of the ViT layers, each one entry whose kernel is chosen below the model, in the addon
// (native/src/ops/fused.cc), from the tensors' device and dtype and the grad mode:
//   fused-cpu   grad mode off, float32 CPU: fused kernels (attention straight from qkv, SGEMM into a bias-filled
//               output with GELU in place, x + γ⊙y in one pass); they record no autograd history
//   flash-cuda  attention on CUDA with libtorch >= 2.1: scaled_dot_product_attention (flash / memory-efficient)
//   fused-cuda  residualAdd on CUDA: one addcmul, with or without autograd
//   plain       the ATen composition of the official code (autograd, other dtypes and devices): the reference
// `linear` (with its activation) is in linalg.ts. `withPlainKernels` forces the plain composition (tests, A/B runs).
import { native } from '../native/binding.js';
import { handleOf as h, type Tensor, wrap } from '../tensor/tensor.js';

/** RoPE tables of the patch tokens, `[P, d]` each (layers/rope_position_encoding.ts). */
export interface RopeSinCos {
  sin: Tensor;
  cos: Tensor;
}

/**
 * Multi-head self-attention from a fused qkv projection (dinov3/layers/attention.py::SelfAttention.compute_attention):
 * `qkv [B, N, 3D]` read as `[B, N, 3, h, D/h]`, RoPE on q and k of the last P tokens (computed in the tables' dtype,
 * cast back), `softmax(q·kᵀ·scale)·v` with scale 1/√(D/h) by default, heads merged → `[B, N, D]`.
 */
export function attention(qkv: Tensor, numHeads: number, rope: RopeSinCos | null = null, o: { scale?: number } = {}): Tensor {
  const sin = rope ? h(rope.sin, 'attention', 'sin') : null;
  const cos = rope ? h(rope.cos, 'attention', 'cos') : null;
  return wrap(native.attention(h(qkv, 'attention', 'qkv'), numHeads, sin, cos, o.scale ?? null));
}

/** `x + gamma ⊙ y` (a residual branch through LayerScale, dinov3/layers/block.py), `x + y` without gamma. */
export const residualAdd = (x: Tensor, y: Tensor, gamma: Tensor | null = null) =>
  wrap(native.residualAdd(h(x, 'residualAdd', 'input'), h(y, 'residualAdd', 'other'), gamma ? h(gamma, 'residualAdd', 'gamma') : null));

export type KernelName = 'fused-cpu' | 'flash-cuda' | 'fused-cuda' | 'plain';

/** The kernel `linear` (with `weight`), `attention` (qkv, no or float32 RoPE tables) or `residualAdd` runs on `x` now. */
export function kernelChoice(op: 'linear' | 'attention' | 'residualAdd', x: Tensor, weight?: Tensor): KernelName {
  return native.kernelChoice(op, h(x, 'kernelChoice', 'input'), weight ? h(weight, 'kernelChoice', 'weight') : undefined);
}

/** Allows (default) or forbids the fused kernels process-wide; returns the previous setting. */
export const setFusedKernels = (on: boolean): boolean => native.setFusedKernels(on);

/** `fn()` with the fused kernels forbidden: every entry runs its plain ATen composition. */
export function withPlainKernels<T>(fn: () => T): T {
  const prev = native.setFusedKernels(false);
  try {
    return fn();
  } finally {
    native.setFusedKernels(prev);
  }
}
