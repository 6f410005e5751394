// Seeded initialisers (torch.nn.init semantics), applied in place without autograd history.
import { native } from '../native/binding.js';
import type { Generator } from '../tensor/creation.js';
import { handleOf, type Tensor } from '../tensor/tensor.js';

/** Truncated normal on [a, b] (absolute bounds, as torch.nn.init.trunc_normal_). */
export function truncNormal_(t: Tensor, o: { mean?: number; std?: number; a?: number; b?: number; generator?: Generator } = {}): Tensor {
  native.truncNormal_(handleOf(t, 'truncNormal_', 'tensor'), o.mean ?? 0, o.std ?? 1, o.a ?? -2, o.b ?? 2, o.generator?.handle);
  return t;
}
export function normal_(t: Tensor, o: { mean?: number; std?: number; generator?: Generator } = {}): Tensor {
  native.normal_(handleOf(t, 'normal_', 'tensor'), o.mean ?? 0, o.std ?? 1, o.generator?.handle);
  return t;
}
export function uniform_(t: Tensor, low: number, high: number, generator?: Generator): Tensor {
  native.uniform_(handleOf(t, 'uniform_', 'tensor'), low, high, generator?.handle);
  return t;
}
export function zeros_(t: Tensor): Tensor {
  native.zero_(handleOf(t, 'zeros_', 'tensor'));
  return t;
}
export function ones_(t: Tensor): Tensor {
  native.fill_(handleOf(t, 'ones_', 'tensor'), 1);
  return t;
}
export function constant_(t: Tensor, value: number): Tensor {
  native.fill_(handleOf(t, 'constant_', 'tensor'), value);
  return t;
}
