// Token concatenation helpers of the list forward (dinov3/utils/utils.py::cat_keep_shapes, ::uncat_with_shapes):
// per-token layers may run on the concatenated tokens of all crop groups.
import { cat, split } from '../ops/shape.js';
import { empty } from '../tensor/creation.js';
import { noGrad } from '../tensor/grad_mode.js';
import type { Tensor } from '../tensor/tensor.js';

/** Flattens each `[..., C]` tensor to `[n_i, C]` and concatenates them along dim 0. */
export function catKeepShapes(xs: Tensor[]): { flat: Tensor; shapes: number[][]; numTokens: number[] } {
  const shapes = xs.map((x) => x.shape);
  const numTokens = shapes.map((s) => s.slice(0, -1).reduce((a, b) => a * b, 1));
  const flat =
    xs.length === 1
      ? xs[0]!.reshape([numTokens[0]!, shapes[0]!.at(-1)!])
      : cat(
          xs.map((x) => x.flatten(0, -2)),
          0,
        );
  return { flat, shapes, numTokens };
}

/** Splits `[Σn_i, C']` back into tensors of the original leading shapes (last dim C'). */
export function uncatWithShapes(flat: Tensor, shapes: number[][], numTokens: number[]): Tensor[] {
  const c = flat.shape.at(-1)!;
  const parts = shapes.length === 1 ? [flat] : split(flat, numTokens, 0);
  return parts.map((p, i) => p.reshape([...shapes[i]!.slice(0, -1), c]));
}

/**
 * Runs a random in-place initialiser on `t`, drawing on the CPU in float32 when `t` lives elsewhere or in a reduced
 * dtype (a CPU Generator cannot drive CUDA draws, and some CPU kernels lack bf16), then copies the values in.
 */
export function drawInto(t: Tensor, fill: (target: Tensor) => void): void {
  if (t.device === 'meta') return;
  if (t.device === 'cpu' && (t.dtype === 'float32' || t.dtype === 'float64')) {
    fill(t);
    return;
  }
  const tmp = empty(t.shape, { dtype: 'float32' });
  try {
    fill(tmp);
    noGrad(() => t.copy_(tmp));
  } finally {
    tmp.dispose();
  }
}
