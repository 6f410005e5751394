// Gram anchoring loss (official: dinov3/loss/gram_loss.py::GramLoss).
import { TorchRangeError } from '../native/errors.js';
import { noGrad } from '../tensor/grad_mode.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { matmul } from '../ops/linalg.js';
import { mseLoss, normalize } from '../ops/nn.js';
import { logicalAnd, lt, maskedFill } from '../ops/pointwise.js';
import { expectFloat, fmtShape } from './checks.js';
import { expectTensor } from '../nn/module.js';

export interface GramLossOptions {
  /** L2-normalise every token first (ε 1e-12), so the Gram entries are cosine similarities. Default true. */
  applyNorm?: boolean;
  /** One [P, P] Gram matrix per image (true) or one [B·P, B·P] matrix over the flattened batch (false, the default
   * config's value; the Gram-anchor and high-res configs use true). */
  imgLevel?: boolean;
  /** Clamp the negative entries of both Gram matrices to 0. Default false. */
  removeNeg?: boolean;
  /** Zero the negative teacher entries (and, by intent, student entries where both are negative: see the QUIRK). */
  removeOnlyTeacherNeg?: boolean;
}

/**
 * MSE between the Gram matrices of the student and teacher patch features (dinov3/loss/gram_loss.py::GramLoss.forward), in float32:
 *
 *     X ← norm2(X) (applyNorm);  G = X Xᵀ per image (imgLevel) or over the flattened batch
 *     loss = mean((G_s − G_t)²)
 *
 * No gradient flows into the teacher. QUIRK (kept): with `removeOnlyTeacherNeg` the official code clamps the teacher
 * matrix before testing "student < 0 and teacher < 0", so that test never fires and the student matrix is unchanged.
 * @param studentFeats [B, P, D] (or [N, D] when not `imgLevel`) student patch features.
 * @param teacherFeats teacher features of the same shape.
 * @example
 * const lGram = gramLoss(studentPatches, gramTeacherPatches, { imgLevel: true });
 * @throws TorchTypeError / TorchRangeError (ERR_INVALID_ARG) for mismatched shapes or conflicting options.
 */
export function gramLoss(studentFeats: Tensor, teacherFeats: Tensor, o: GramLossOptions = {}): Tensor {
  expectTensor(studentFeats, 'gramLoss', 'studentFeats');
  expectTensor(teacherFeats, 'gramLoss', 'teacherFeats');
  const op = 'gramLoss';
  const imgLevel = o.imgLevel ?? false;
  if (o.removeNeg && o.removeOnlyTeacherNeg)
    throw new TorchRangeError(`${op}: "removeNeg" and "removeOnlyTeacherNeg" are exclusive; set at most one`, 'ERR_INVALID_ARG');
  if (imgLevel) expectFloat(op, 'studentFeats', studentFeats, ['images', 'patches', 'features']);
  else expectFloat(op, 'studentFeats', studentFeats, studentFeats.ndim === 2 ? ['tokens', 'features'] : ['images', 'patches', 'features']);
  expectFloat(op, 'teacherFeats', teacherFeats, studentFeats.shape, `the shape of "studentFeats" ${fmtShape(studentFeats.shape)}`);
  const applyNorm = o.applyNorm ?? true;
  const gram = (x: Tensor) => {
    let f = x.float();
    if (applyNorm) f = normalize(f, 2, -1, 1e-12);
    if (!imgLevel && f.ndim === 3) f = f.flatten(0, 1); // [B·P, D]
    return matmul(f, f.transpose(-1, -2)); // [B, P, P] or [B·P, B·P]
  };
  return scope(op, () => {
    let target = noGrad(() => gram(teacherFeats));
    let student = gram(studentFeats);
    if (o.removeNeg) {
      target = maskedFill(target, lt(target, 0), 0);
      student = maskedFill(student, lt(student, 0), 0);
    } else if (o.removeOnlyTeacherNeg) {
      target = maskedFill(target, lt(target, 0), 0);
      student = maskedFill(student, logicalAnd(lt(student, 0), lt(target, 0)), 0); // never true: see the QUIRK
    }
    return mseLoss(student, target);
  });
}
