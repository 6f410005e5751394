// Deterministic lifetime of native tensors. Every tensor has one owner: a Module, an Optimizer, the innermost active
// scope, or the caller. `scope(fn)` disposes everything created inside that is not returned or kept.
import { native } from '../native/binding.js';
import { TorchTypeError } from '../native/errors.js';

/** Anything that can be disposed and tracked by a scope. */
export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
  /**
   * Called when no scope owns the object any more (created outside every scope, kept, or returned from the outermost
   * scope): a Tensor then registers with the GC backstop. While a scope holds it, the scope's reference keeps it
   * alive, so tensors that live and die inside scopes never pay for the backstop.
   */
  orphaned?(): void;
}

type Frame = { name: string; items: Set<Disposable> };
const stack: Frame[] = [];

/** Called by every new tensor: the innermost scope (if any) becomes its owner. */
export function track(t: Disposable): void {
  const top = stack[stack.length - 1];
  if (top) top.items.add(t);
  else t.orphaned?.();
}

/** Removes `t` from every active scope (when it is disposed). */
export function untrack(t: Disposable): void {
  for (let i = stack.length - 1; i >= 0; i--) if (stack[i]!.items.delete(t)) return;
}

/** Removes `t` from every active scope: the caller (or a Module/Optimizer) owns it from now on. */
export function adopt(t: Disposable): void {
  untrack(t);
  t.orphaned?.();
}

/** Collects tensors reachable in a scope's return value (arrays, plain objects, Maps; one level of nesting deep). */
function collect(v: unknown, out: Set<Disposable>, depth = 0): void {
  if (v === null || typeof v !== 'object' || depth > 4) return;
  if ('isDisposed' in v && typeof (v as Disposable).dispose === 'function') {
    out.add(v as Disposable);
    return;
  }
  if (Array.isArray(v)) for (const x of v) collect(x, out, depth + 1);
  else if (v instanceof Map) for (const x of v.values()) collect(x, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collect(x, out, depth + 1);
}

/**
 * Runs `fn` synchronously and disposes every tensor created inside it, except those it returns (which move to the
 * enclosing scope) and those passed to `keep()`.
 * @example
 * const y = scope(() => x.mul(2).add(1)); // the intermediate x.mul(2) is freed here
 * @throws TypeError if `fn` returns a Promise (scopes are synchronous; use `using` in async code).
 */
export function scope<R>(fn: () => R): R;
export function scope<R>(name: string, fn: () => R): R;
export function scope<R>(a: string | (() => R), b?: () => R): R {
  const name = typeof a === 'string' ? a : 'scope';
  const fn = (typeof a === 'function' ? a : b) as () => R;
  if (typeof fn !== 'function') throw new TorchTypeError(`scope: expected "fn" to be a function, received ${typeof fn}`, 'ERR_INVALID_ARG');
  const frame: Frame = { name, items: new Set() };
  stack.push(frame);
  let result: R;
  let ok = false;
  try {
    result = fn();
    ok = true;
  } finally {
    stack.pop();
    const keepSet = new Set<Disposable>();
    if (ok) {
      if (result! instanceof Promise) {
        for (const t of frame.items) t.dispose();
        // biome-ignore lint/correctness/noUnsafeFinally: the Promise check must run after the frame is popped
        throw new TorchTypeError(
          `scope "${name}": the function returned a Promise; scopes are synchronous (await interleaves them). ` +
            'Use `using` declarations or dispose() in async code.',
          'ERR_INVALID_ARG',
        );
      }
      collect(result!, keepSet);
    }
    const parent = stack[stack.length - 1];
    for (const t of frame.items) {
      if (!keepSet.has(t)) t.dispose();
      else if (parent) parent.items.add(t);
      else t.orphaned?.();
    }
  }
  return result!;
}

/** Keeps `t` alive past the enclosing scopes: the caller becomes its owner and must dispose it. Returns `t`. */
export function keep<T extends Disposable>(t: T): T {
  if (typeof t !== 'object' || t === null || typeof (t as Partial<Disposable>).dispose !== 'function')
    throw new TorchTypeError(`keep: expected "t" to be a Tensor (or another disposable), received ${t === null ? 'null' : typeof t}`, 'ERR_INVALID_ARG');
  adopt(t);
  return t;
}

/** Number of active scopes (for diagnostics). */
export function scopeDepth(): number {
  return stack.length;
}

/** Live native tensors and bytes. CUDA figures come from the caching allocator (0 without CUDA). */
export function memory(): {
  liveTensors: number;
  cpuBytes: number;
  cudaBytes: number;
  cudaAllocated: number;
  cudaReserved: number;
} {
  const m = native.memory();
  const c = native.cudaMemory();
  return { liveTensors: m.liveTensors, cpuBytes: m.cpuBytes, cudaBytes: m.cudaBytes, cudaAllocated: c.allocated, cudaReserved: c.reserved };
}
