// Argument checks shared by the losses (dinov3/loss/*): each failure names the loss, the argument, what was expected and
// what was received (dtype and shape), e.g.
//   dinoClsTokenLoss: expected "teacherProbs" to be a floating Tensor [crops, 6, 32] (batch and prototypes of
//   "studentLogits"), received float32 Tensor [2, 5, 32]
import { TorchRangeError, TorchTypeError } from '../native/errors.js';
import { assertLive, describe, Tensor } from '../tensor/tensor.js';

const FLOATING = new Set(['float32', 'float64', 'bfloat16', 'float16']);

/** `[a, b, c]` with numbers or dimension names. */
export const fmtShape = (dims: readonly (number | string)[]): string => `[${dims.join(', ')}]`;

/**
 * Checks that `t` is a live floating Tensor whose shape matches `dims` (a number must match exactly, a string names a
 * free dimension). `why` is appended to the expectation in parentheses.
 * @throws TorchTypeError (not a floating Tensor) or TorchRangeError (wrong shape), both with code ERR_INVALID_ARG.
 */
export function expectFloat(op: string, name: string, t: unknown, dims: readonly (number | string)[], why?: string): Tensor {
  const expected = `a floating Tensor ${fmtShape(dims)}${why ? ` (${why})` : ''}`;
  if (!(t instanceof Tensor)) throw new TorchTypeError(`${op}: expected "${name}" to be ${expected}, received ${describe(t)}`, 'ERR_INVALID_ARG');
  assertLive(t, op, name);
  if (!FLOATING.has(t.dtype)) throw new TorchTypeError(`${op}: expected "${name}" to be ${expected}, received ${describe(t)}`, 'ERR_INVALID_ARG');
  const s = t.shape;
  if (s.length !== dims.length || dims.some((d, i) => typeof d === 'number' && s[i] !== d))
    throw new TorchRangeError(`${op}: expected "${name}" to be ${expected}, received ${describe(t)}`, 'ERR_INVALID_ARG');
  return t;
}

/** Checks that `t` is a live 2-D boolean Tensor. */
export function expectBoolMask(op: string, name: string, t: unknown, dims: readonly (number | string)[]): Tensor {
  const expected = `a bool Tensor ${fmtShape(dims)}`;
  if (!(t instanceof Tensor)) throw new TorchTypeError(`${op}: expected "${name}" to be ${expected}, received ${describe(t)}`, 'ERR_INVALID_ARG');
  assertLive(t, op, name);
  if (t.dtype !== 'bool') throw new TorchTypeError(`${op}: expected "${name}" to be ${expected}, received ${describe(t)}`, 'ERR_INVALID_ARG');
  const s = t.shape;
  if (s.length !== dims.length || dims.some((d, i) => typeof d === 'number' && s[i] !== d))
    throw new TorchRangeError(`${op}: expected "${name}" to be ${expected}, received ${describe(t)}`, 'ERR_INVALID_ARG');
  return t;
}

// The number checks are the shared boundary checks (src/tensor/args.ts).
export { expectPositive, expectPositiveInt } from '../tensor/args.js';
