// Module: named parameters, buffers and children whose dotted names are the state-dict keys (as torch's
// register_module/register_parameter), strict state-dict loading with a key report, train/eval, deterministic dispose.
import { native } from '../native/binding.js';
import { StateDictError, type StateDictReport, TorchTypeError } from '../native/errors.js';
import { noGrad } from '../tensor/grad_mode.js';
import { adopt } from '../tensor/scope.js';
import { describe, type Device, type DType, handleOf, Tensor } from '../tensor/tensor.js';
import { closest, previewList } from '../util/suggest.js';

export type StateDict = Map<string, Tensor>;

export class Module {
  training = true;
  readonly #params = new Map<string, Tensor>();
  readonly #buffers = new Map<string, { t: Tensor; persistent: boolean }>();
  readonly #children = new Map<string, Module>();
  #disposed = false;

  /** Registers a trainable parameter (requiresGrad on). The module owns it from now on. */
  protected registerParameter(name: string, t: Tensor): Tensor {
    adopt(t);
    if (!t.requiresGrad) t.requiresGrad_(true);
    this.#params.set(name, t);
    return t;
  }
  /** Registers a buffer (saved in the state dict when persistent, never trained). */
  protected registerBuffer(name: string, t: Tensor, persistent = true): Tensor {
    adopt(t);
    this.#buffers.set(name, { t, persistent });
    return t;
  }
  protected registerModule<M extends Module>(name: string, m: M): M {
    this.#children.set(name, m);
    return m;
  }

  /** Direct children, in registration order. */
  children(): [string, Module][] {
    return [...this.#children];
  }
  /** Every module below (and including) this one, with dotted names, in torch's order. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, c] of this.#children) out.push(...c.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }
  /** Parameters with their state-dict names: each module's own first, then its children's, recursively. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [p, m] of this.namedModules(prefix)) for (const [n, t] of m.#params) out.push([p ? `${p}.${n}` : n, t]);
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }
  namedBuffers(prefix = '', persistentOnly = false): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [p, m] of this.namedModules(prefix)) for (const [n, b] of m.#buffers) if (!persistentOnly || b.persistent) out.push([p ? `${p}.${n}` : n, b.t]);
    return out;
  }
  /** Number of parameter elements. */
  numParameters(): number {
    return this.parameters().reduce((s, t) => s + t.numel, 0);
  }

  /**
   * Parameters and persistent buffers by state-dict key, in torch's order (per module: parameters, buffers, then
   * children). The tensors are the module's own (not copies): do not dispose them.
   */
  stateDict(prefix = ''): StateDict {
    const out: StateDict = new Map();
    const visit = (m: Module, p: string) => {
      for (const [n, t] of m.#params) out.set(p + n, t);
      for (const [n, b] of m.#buffers) if (b.persistent) out.set(p + n, b.t);
      for (const [n, c] of m.#children) visit(c, `${p}${n}.`);
    };
    visit(this, prefix ? `${prefix}.` : '');
    return out;
  }

  /** Compares a state dict with this module's keys and shapes. */
  checkStateDict(sd: Map<string, { shape: number[] }>): StateDictReport {
    const own = this.stateDict();
    const report: StateDictReport = { missing: [], unexpected: [], mismatched: [] };
    for (const [k, t] of own) {
      const s = sd.get(k);
      if (!s) report.missing.push(k);
      else if (s.shape.length !== t.shape.length || s.shape.some((v, i) => v !== t.shape[i]))
        report.mismatched.push({ key: k, expected: t.shape, received: s.shape });
    }
    for (const k of sd.keys()) if (!own.has(k)) report.unexpected.push(k);
    return report;
  }

  /**
   * Copies values from `sd` into this module's parameters and buffers (converting dtype/device as needed).
   * Strict (default): any missing, unexpected or shape-mismatched key raises a StateDictError listing them all, and
   * nothing is copied. Non-strict: copies the matching keys and returns the report.
   * @throws StateDictError
   */
  loadStateDict(sd: Map<string, Tensor> | Record<string, Tensor>, opts: { strict?: boolean } = {}): StateDictReport {
    if (sd === null || typeof sd !== 'object' || Array.isArray(sd))
      throw new TorchTypeError(`loadStateDict: expected a Map or a record of Tensors, received ${describe(sd)}`, 'ERR_INVALID_ARG');
    const map = sd instanceof Map ? sd : new Map(Object.entries(sd));
    for (const [k, v] of map)
      if (!(v instanceof Tensor)) throw new TorchTypeError(`loadStateDict: expected "${k}" to be a Tensor, received ${describe(v)}`, 'ERR_INVALID_ARG');
    const report = this.checkStateDict(map);
    const bad = report.missing.length + report.unexpected.length + report.mismatched.length;
    if ((opts.strict ?? true) && bad > 0) throw new StateDictError(formatReport(report, this.stateDict().keys()), report);
    const own = this.stateDict();
    const mismatched = new Set(report.mismatched.map((m) => m.key));
    noGrad(() => {
      for (const [k, t] of own) {
        const src = map.get(k);
        if (src && !mismatched.has(k)) t.copy_(src);
      }
    });
    return report;
  }

  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  /** Moves/converts every parameter and buffer in place (the Tensor objects stay the same). */
  to_(opts: { dtype?: DType; device?: Device }): this {
    noGrad(() => {
      for (const t of [...this.parameters(), ...this.namedBuffers().map(([, b]) => b)]) {
        const floating = t.dtype === 'float32' || t.dtype === 'float64' || t.dtype === 'bfloat16' || t.dtype === 'float16';
        const c = t.to({ dtype: floating ? opts.dtype : undefined, device: opts.device });
        t.replaceData(c); // also forgets the dtype/shape the Tensor had cached
        c.dispose();
      }
    });
    return this;
  }

  /** Sets requiresGrad on every parameter (false for frozen copies such as the EMA teacher). */
  requiresGrad_(on: boolean): this {
    for (const t of this.parameters()) t.requiresGrad_(on);
    return this;
  }
  /** Drops every parameter's gradient. */
  zeroGrad(): void {
    native.zeroGrad(this.parameters().map((t, i) => handleOf(t, 'zeroGrad', `parameters[${i}]`)));
  }

  get isDisposed(): boolean {
    return this.#disposed;
  }
  /** Frees every parameter (and its gradient) and buffer of this module and its children. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    for (const [, m] of this.namedModules()) {
      for (const t of m.#params.values()) {
        if (!t.isDisposed) native.setGrad(handleOf(t, 'dispose', 'parameter'), null);
        t.dispose();
      }
      for (const b of m.#buffers.values()) b.t.dispose();
      m.#disposed = true;
    }
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

function formatReport(r: StateDictReport, known: Iterable<string>): string {
  const knownList = [...known];
  return formatStateDictReport('loadStateDict: the state dict does not match the module (strict loading)', r, (k) => closest(k, knownList));
}

/**
 * The message of a strict-loading StateDictError: `header`, then the missing keys, the unexpected keys (each with
 * `suggest(key)` as a "did you mean" hint when it gives one) and the shape mismatches, one line each.
 */
export function formatStateDictReport(header: string, r: StateDictReport, suggest: (key: string) => string | undefined): string {
  const lines = [header];
  if (r.missing.length) lines.push(`missing keys (${r.missing.length}): ${previewList(r.missing)}`);
  if (r.unexpected.length) {
    const hint = (k: string) => {
      const c = suggest(k);
      return c ? `${k} (did you mean ${c}?)` : k;
    };
    lines.push(`unexpected keys (${r.unexpected.length}): ${previewList(r.unexpected, hint)}`);
  }
  if (r.mismatched.length) {
    const show = (m: StateDictReport['mismatched'][number]) => `${m.key}: expected [${m.expected.join(', ')}], received [${m.received.join(', ')}]`;
    lines.push(`shape mismatches (${r.mismatched.length}): ${previewList(r.mismatched, show, '; ')}`);
  }
  return lines.join('\n');
}

/** Throws unless `t` is a Tensor (for module constructors taking tensors). */
export function expectTensor(t: unknown, op: string, name: string): asserts t is Tensor {
  if (!(t instanceof Tensor)) throw new TorchTypeError(`${op}: expected "${name}" to be a Tensor`, 'ERR_INVALID_ARG');
}
