// EMA teacher update (dinov3/train/ssl_meta_arch.py::SSLMetaArch.update_ema): one native foreach mul + add
// over all parameters, θ_t ← m·θ_t + (1 − m)·θ_s. Buffers are not EMA'd.
import { native } from '../native/binding.js';
import { TorchRangeError, TorchTypeError } from '../native/errors.js';
import { Module } from '../nn/module.js';
import { describe, handleOf, type Tensor } from '../tensor/tensor.js';

function paramsOf(v: unknown, op: string, name: string): readonly Tensor[] {
  if (v instanceof Module) return v.parameters();
  if (Array.isArray(v)) return v;
  throw new TorchTypeError(`${op}: expected "${name}" to be a Module or an array of Tensors, received ${describe(v)}`, 'ERR_INVALID_ARG');
}

/**
 * teacher ← momentum·teacher + (1 − momentum)·student, in place, for matching parameters (same order and shapes).
 * Passing Modules uses their `parameters()`.
 * @example emaUpdate(teacher.backbone, student.backbone, momentumSchedule[it]);
 * @throws TorchRangeError if the lists differ in length or shape, or momentum is not a finite number.
 */
export function emaUpdate(teacher: readonly Tensor[] | Module, student: readonly Tensor[] | Module, momentum: number): void {
  const op = 'emaUpdate';
  const t = paramsOf(teacher, op, 'teacher');
  const s = paramsOf(student, op, 'student');
  if (typeof momentum !== 'number') throw new TorchTypeError(`${op}: expected "momentum" to be a number, received ${describe(momentum)}`, 'ERR_INVALID_ARG');
  if (!Number.isFinite(momentum)) throw new TorchRangeError(`${op}: "momentum" must be a finite number, received ${momentum}`, 'ERR_INVALID_ARG');
  native.emaUpdate(
    t.map((x, i) => handleOf(x, op, `teacher[${i}]`)),
    s.map((x, i) => handleOf(x, op, `student[${i}]`)),
    momentum,
  );
}
