// Finite-difference gradient checker for the ops (float64 central differences against autograd).
//
// The outputs of `fn` are projected to one scalar L = Σ_k Σ(out_k ⊙ w_k) with fixed pseudo-random weights w_k, so
// every output element takes part and the check is one backward pass. For each checked input element x_j:
//   numeric_j = (L(x + eps·e_j) − L(x − eps·e_j)) / (2·eps)    (under noGrad)
//   analytic_j = ∂L/∂x_j from `backward` (`.grad`; a missing grad counts as zeros)
// An element passes when |analytic − numeric| ≤ atol + rtol·|numeric| (as torch.allclose). The report names the op,
// the worst element (input number and multi-dimensional index) and the largest absolute and relative errors.
import { noGrad, scope, tensor, Tensor } from '../../src/index.js';

export interface GradcheckOptions {
  /** Finite-difference step (default 1e-6). */
  eps?: number;
  /** Absolute tolerance (default 1e-5). */
  atol?: number;
  /** Relative tolerance (default 1e-4). */
  rtol?: number;
  /** Indices of the inputs to check (default: every float64 input). */
  wrt?: number[];
}

export interface GradcheckReport {
  op: string;
  ok: boolean;
  /** Largest |analytic − numeric| over all checked elements. */
  maxAbsErr: number;
  /** Largest |analytic − numeric| / max(|numeric|, |analytic|) over all checked elements (0 where both are 0). */
  maxRelErr: number;
  /** The element with the largest error relative to its tolerance. */
  worst: { input: number; index: number[]; analytic: number; numeric: number } | null;
  /** Number of input elements checked. */
  checked: number;
}

type Fn = (...xs: Tensor[]) => Tensor | Tensor[] | { values: Tensor };

function outputsOf(r: ReturnType<Fn>): Tensor[] {
  if (r instanceof Tensor) return [r];
  if (Array.isArray(r)) return r;
  return [r.values];
}

// Deterministic weights in [-1, -0.5] ∪ [0.5, 1] (never ~0, so no output element is ignored).
function weights(n: number, salt: number): Float64Array {
  const w = new Float64Array(n);
  let s = (0x9e3779b9 ^ (salt * 0x85ebca6b)) >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2 ** 32;
    w[i] = (u < 0.5 ? -1 : 1) * (0.5 + (u < 0.5 ? u : u - 0.5));
  }
  return w;
}

const FLOATS = new Set(['float64', 'float32', 'bfloat16', 'float16']);

// L = Σ_k Σ(out_k ⊙ w_k) over the floating-point outputs (integer outputs such as indices are skipped).
function projected(fn: Fn, xs: Tensor[]): Tensor {
  const outs = outputsOf(fn(...xs)).filter((o) => FLOATS.has(o.dtype));
  if (outs.length === 0) throw new Error('gradcheck: the function returned no floating-point output');
  let total: Tensor | null = null;
  outs.forEach((o, k) => {
    const w = tensor(weights(o.numel, k + 1), { shape: o.shape }).to(o.dtype);
    const term = o.mul(w).sum();
    total = total ? total.add(term) : term;
  });
  return total!;
}

function unravel(flat: number, shape: number[]): number[] {
  const idx = new Array<number>(shape.length).fill(0);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = flat % shape[d]!;
    flat = Math.floor(flat / shape[d]!);
  }
  return idx;
}

/** Runs the check and returns a report (no tensors are left behind). */
export function gradcheck(op: string, fn: Fn, inputs: Tensor[], o: GradcheckOptions = {}): GradcheckReport {
  const eps = o.eps ?? 1e-6;
  const atol = o.atol ?? 1e-5;
  const rtol = o.rtol ?? 1e-4;
  const wrt = o.wrt ?? inputs.flatMap((x, i) => (x.dtype === 'float64' ? [i] : []));
  for (const i of wrt) {
    const x = inputs[i];
    if (!(x instanceof Tensor) || x.dtype !== 'float64')
      throw new Error(`gradcheck(${op}): input ${i} must be a float64 Tensor, received ${x instanceof Tensor ? x.dtype : typeof x}`);
  }
  return scope(() => {
    // Analytic gradients: fresh leaves so that the callers' tensors are never touched.
    const leaves = inputs.map((x, i) => (wrt.includes(i) ? x.detach().clone().requiresGrad_(true) : x));
    projected(fn, leaves).backward();
    const analytic = wrt.map((i) => {
      const g = leaves[i]!.grad;
      return g ? Float64Array.from(g.data() as Float64Array) : new Float64Array(leaves[i]!.numel);
    });

    const report: GradcheckReport = { op, ok: true, maxAbsErr: 0, maxRelErr: 0, worst: null, checked: 0 };
    let worstRatio = -1;
    noGrad(() => {
      wrt.forEach((i, n) => {
        const x = inputs[i]!;
        const base = Float64Array.from(x.data() as Float64Array);
        const at = (j: number, delta: number) =>
          scope(() => {
            const v = base.slice();
            v[j]! += delta;
            const xs = leaves.slice();
            xs[i] = tensor(v, { shape: x.shape });
            return projected(fn, xs).item();
          });
        for (let j = 0; j < base.length; j++) {
          const numeric = (at(j, eps) - at(j, -eps)) / (2 * eps);
          const a = analytic[n]![j]!;
          const err = Math.abs(a - numeric);
          const scale = Math.max(Math.abs(numeric), Math.abs(a));
          const rel = scale === 0 ? 0 : err / scale;
          const ratio = err / (atol + rtol * Math.abs(numeric));
          report.checked++;
          report.maxAbsErr = Math.max(report.maxAbsErr, err);
          report.maxRelErr = Math.max(report.maxRelErr, rel);
          if (ratio > 1 || Number.isNaN(err)) report.ok = false;
          if (ratio > worstRatio || Number.isNaN(err)) {
            worstRatio = Number.isNaN(err) ? Infinity : ratio;
            report.worst = { input: i, index: unravel(j, x.shape), analytic: a, numeric };
          }
        }
      });
    });
    return report;
  });
}

/** A one-paragraph description of a report (used as the failure message). */
export function formatReport(r: GradcheckReport, o: GradcheckOptions = {}): string {
  const w = r.worst;
  const where = w ? `worst at input ${w.input} [${w.index.join(', ')}]: analytic ${w.analytic} vs numeric ${w.numeric}; ` : '';
  return (
    `gradcheck(${r.op}) ${r.ok ? 'passed' : 'FAILED'}: ${where}max abs err ${r.maxAbsErr.toExponential(2)}, ` +
    `max rel err ${r.maxRelErr.toExponential(2)} over ${r.checked} elements (atol ${o.atol ?? 1e-5}, rtol ${o.rtol ?? 1e-4})`
  );
}

/** Throws an Error with the formatted report unless the check passes; returns the report. */
export function expectGradcheck(op: string, fn: Fn, inputs: Tensor[], o: GradcheckOptions = {}): GradcheckReport {
  const r = gradcheck(op, fn, inputs, o);
  if (!r.ok) throw new Error(formatReport(r, o));
  return r;
}
