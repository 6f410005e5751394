// Installs op functions as Tensor methods: `installMethods({ add })` makes `x.add(y)` call `add(x, y)`.
// Rule: every op of src/ops whose first argument is a Tensor is also a Tensor method of the same name (checked by
// test/unit/ops/methods.test.ts). Exceptions: ops whose first argument is not the tensor operated on (`where`'s
// condition, `einsum`'s equation, `cat`/`stack`'s lists).
import { Tensor } from '../tensor/tensor.js';

// biome-ignore lint/suspicious/noExplicitAny: each op has its own argument list
type OpFn = (self: Tensor, ...args: any[]) => unknown;

export function installMethods(fns: Record<string, OpFn>): void {
  for (const [name, fn] of Object.entries(fns)) {
    Object.defineProperty(Tensor.prototype, name, {
      value: function (this: Tensor, ...args: unknown[]) {
        return fn(this, ...args);
      },
      writable: true,
      configurable: true,
    });
  }
}
