import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import {
  AdamW,
  CheckpointError,
  DisposedError,
  Generator,
  memory,
  noGrad,
  randn,
  scope,
  StateDictError,
  tensor,
  type Tensor,
  TorchRangeError,
  TorchTypeError,
  zeros,
} from '../../../src/index.js';
import { writeSafetensorsFile } from '../../../src/io/safetensors.js';
import { errorOf } from '../ops/util.js';

// ---- a float64 reference of torch.optim.AdamW (per-parameter step counts, decoupled decay) ----------------------

interface RefParam {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
  step: number;
}
const refParam = (values: number[]): RefParam => ({
  p: Float64Array.from(values),
  m: new Float64Array(values.length),
  v: new Float64Array(values.length),
  step: 0,
});

function refStep(r: RefParam, g: number[] | null, lr: number, wd: number, b1: number, b2: number, eps: number): void {
  if (!g) return; // no gradient: skipped entirely
  r.step += 1;
  const bc1 = 1 - b1 ** r.step;
  const bc2 = 1 - b2 ** r.step;
  for (let i = 0; i < r.p.length; i++) {
    r.p[i]! *= 1 - lr * wd;
    r.m[i] = b1 * r.m[i]! + (1 - b1) * g[i]!;
    r.v[i] = b2 * r.v[i]! + (1 - b2) * g[i]! * g[i]!;
    r.p[i]! -= (lr / bc1) * (r.m[i]! / (Math.sqrt(r.v[i]!) / Math.sqrt(bc2) + eps));
  }
}

/** Deterministic float32-representable values in [-1, 1). */
function values(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.fround(s / 2 ** 31 - 1);
  });
}

const param = (shape: number[], vals: number[]): Tensor => tensor(vals, { shape }).requiresGrad_(true);
function setGrad(p: Tensor, vals: number[]): void {
  const g = tensor(vals, { shape: p.shape });
  p.grad = g;
  g.dispose();
}
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Gives `a` and `b` the same gradient `grad`, then steps `oa` (the optimizer of `a`) and `ob` (that of `b`). */
function stepBoth(oa: AdamW, a: Tensor, ob: AdamW, b: Tensor, grad: number[]): void {
  setGrad(a, grad);
  setGrad(b, grad);
  oa.step();
  ob.step();
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  expect(worst).toBeLessThanOrEqual(atol);
}

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dinov3-adamw-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('AdamW', () => {
  test('matches a float64 reference over steps with two groups whose lr / wd change every step', () => {
    const before = memory().liveTensors;
    const shapes = [[3, 4], [4], [5], [2, 2]];
    const params = shapes.map((s, i) => param(s, values(numel(s), 10 + i)));
    const refs = shapes.map((s, i) => refParam(values(numel(s), 10 + i)));
    // Group 0: two params; group 1: one param with a grad on odd steps only and one that never has a grad.
    const opt = new AdamW(
      [
        { params: [params[0]!, params[1]!], name: 'decay', lrMult: 1 },
        { params: [params[2]!, params[3]!], name: 'other', lrMult: 0.5, weightDecay: 0 },
      ],
      { betas: [0.9, 0.99], eps: 1e-8 },
    );
    const [b1, b2] = opt.betas;
    for (let it = 0; it < 6; it++) {
      const lr = 0.01 * (1 + it);
      const wd = 0.04 + 0.05 * it;
      opt.paramGroups[0]!.lr = lr;
      opt.paramGroups[0]!.weightDecay = wd;
      opt.paramGroups[1]!.lr = lr * (opt.paramGroups[1]!.lrMult as number);
      opt.paramGroups[1]!.weightDecay = it % 2 === 0 ? 0 : wd / 2;
      const grads = shapes.map((s, i) => (i === 3 || (i === 2 && it % 2 === 0) ? null : values(numel(s), 100 * it + i)));
      opt.zeroGrad();
      grads.forEach((g, i) => g && setGrad(params[i]!, g));
      opt.step();
      grads.forEach((g, i) => {
        const gi = i < 2 ? 0 : 1;
        refStep(refs[i]!, g, opt.paramGroups[gi]!.lr, opt.paramGroups[gi]!.weightDecay, b1, b2, opt.eps);
      });
    }
    params.forEach((p, i) => expectClose(p.toArray(), refs[i]!.p, 2e-6));
    // The param without a gradient is untouched; the one with a grad every other step was stepped 3 times.
    expect(params[3]!.toArray()).toEqual(values(4, 13));
    const sd = opt.stateDict();
    expect(sd.step).toBe(6);
    expect(sd.paramGroups.map((g) => g.steps)).toEqual([
      [6, 6],
      [3, 0],
    ]);
    sd.state.forEach((s, gi) =>
      s.expAvg.forEach((m, i) => {
        expectClose(m.toArray(), refs[gi * 2 + i]!.m, 1e-6);
        expectClose(s.expAvgSq[i]!.toArray(), refs[gi * 2 + i]!.v, 1e-7);
        expect(m.dtype).toBe('float32');
      }),
    );
    expect(opt.stepCount).toBe(6);
    opt.dispose();
    params.forEach((p) => p.dispose());
    expect(memory().liveTensors).toBe(before);
  });

  // On the CPU the step runs its op chain slice by slice (native/src/optim/optim.cc InSlices: tensors longer than 2^18
  // elements in contiguous pieces, small ones packed together), the same ops per element as one pass over each tensor.
  // A transposed layout is never cut (non-contiguous), so it gives the one-pass bits; the two must agree exactly, with
  // a parameter cut in 13 pieces (the last short), one that fits whole, and per-parameter step counts that differ.
  test('large parameters: the sliced step gives the same bits as one pass over each tensor', () => {
    const before = memory().liveTensors;
    const shapes = [[1537, 2049], [300, 700], [384], [7, 5]];
    // Everything is made inside a scope, so the handles (parameters, gradients, views) are freed with it.
    const run = (transposed: boolean) =>
      scope(() => {
        const lay = (t: Tensor) => (transposed && t.shape.length === 2 ? t.t().contiguous().t() : t);
        const ps = shapes.map((sh, i) =>
          lay(randn(sh, { generator: new Generator(40 + i) }))
            .detach()
            .requiresGrad_(),
        );
        const grads = shapes.map((sh, i) => lay(randn(sh, { generator: new Generator(50 + i) })));
        const opt = new AdamW([{ params: ps, lr: 1e-3, weightDecay: 0.04 }]);
        for (let it = 0; it < 3; it++) {
          // parameter 1 skips the second step: its bias correction then differs from the others'
          ps.forEach((p, i) => (p.grad = i === 1 && it === 1 ? null : grads[i]!));
          opt.step();
        }
        opt.dispose();
        expect(ps[0]!.isContiguous).toBe(!transposed);
        return ps.map((p) => Buffer.from(p.contiguous().toFloat32Array().buffer));
      });
    const sliced = run(false);
    const whole = run(true);
    sliced.forEach((b, i) => expect(b.equals(whole[i]!), `parameter ${i}`).toBe(true));
    expect(memory().liveTensors).toBe(before);
  });

  test('lr = 0 leaves the weights unchanged but still updates the moments and the step count (§6.2 freeze)', () => {
    const p = param([4], [1, -2, 3, -4]);
    const opt = new AdamW([{ params: [p], lr: 0, weightDecay: 0.04, isLastLayer: true }]);
    setGrad(p, [0.5, -0.25, 1, 2]);
    opt.step();
    opt.step();
    expect(p.toArray()).toEqual([1, -2, 3, -4]);
    const sd = opt.stateDict();
    expect(sd.paramGroups[0]!.steps).toEqual([2]);
    // m = (1 − 0.9²)·g after two steps with the same gradient.
    expectClose(
      sd.state[0]!.expAvg[0]!.toArray(),
      [0.5, -0.25, 1, 2].map((g) => 0.19 * g),
      1e-7,
    );
    expectClose(
      sd.state[0]!.expAvgSq[0]!.toArray(),
      [0.5, -0.25, 1, 2].map((g) => (1 - 0.999 ** 2) * g * g),
      1e-9,
    );
    opt.dispose();
    p.dispose();
  });

  test('a plain parameter list is one group with the default hyperparameters', () => {
    const p = param([2], [1, 1]);
    const opt = new AdamW([p], { lr: 0.1, weightDecay: 0.5 });
    expect(opt.paramGroups).toHaveLength(1);
    expect(opt.paramGroups[0]!.lr).toBe(0.1);
    expect(opt.paramGroups[0]!.weightDecay).toBe(0.5);
    setGrad(p, [1, -1]);
    opt.step();
    // step 1: p·(1 − 0.05) − 0.1·sign(g) (m̂/√v̂ = ±1 up to eps)
    expectClose(p.toArray(), [0.95 - 0.1, 0.95 + 0.1], 1e-6);
    opt.dispose();
    p.dispose();
  });

  test('fused: true falls back to the foreach path on CPU (identical results)', () => {
    const a = param([3], [0.1, 0.2, 0.3]);
    const b = param([3], [0.1, 0.2, 0.3]);
    const oa = new AdamW([a], { lr: 0.01 });
    const ob = new AdamW([b], { lr: 0.01, fused: true });
    for (let it = 0; it < 3; it++) stepBoth(oa, a, ob, b, values(3, it));
    expect(b.toArray()).toEqual(a.toArray());
    for (const t of [oa, ob, a, b]) t.dispose();
  });

  test('zeroGrad drops every gradient', () => {
    const p = param([2], [1, 2]);
    const q = param([1], [3]);
    const opt = new AdamW([{ params: [p] }, { params: [q] }]);
    setGrad(p, [1, 1]);
    setGrad(q, [1]);
    opt.zeroGrad();
    expect(p.grad).toBeNull();
    expect(q.grad).toBeNull();
    opt.dispose();
    p.dispose();
    q.dispose();
  });

  test('stateDict → loadStateDict continues identically', () => {
    const init = values(6, 7);
    const a = param([2, 3], init);
    const b = param([2, 3], init);
    const oa = new AdamW([{ params: [a], lr: 0.02, weightDecay: 0.1, name: 'w' }]);
    const ob = new AdamW([{ params: [b] }]);
    for (let it = 0; it < 3; it++) {
      setGrad(a, values(6, 50 + it));
      oa.step();
    }
    noGrad(() => b.copy_(a));
    ob.loadStateDict(oa.stateDict());
    expect(ob.stepCount).toBe(3);
    expect(ob.paramGroups[0]).toMatchObject({ lr: 0.02, weightDecay: 0.1, name: 'w' });
    expect(ob.paramGroups[0]!.params[0]).toBe(b);
    for (let it = 3; it < 5; it++) stepBoth(oa, a, ob, b, values(6, 50 + it));
    expect(b.toArray()).toEqual(a.toArray());
    for (const t of [oa, ob, a, b]) t.dispose();
  });

  test('save / load through a .safetensors file round-trips and continues identically', async () => {
    const before = memory().liveTensors;
    const a1 = param([4, 2], values(8, 1));
    const a2 = param([3], values(3, 2));
    const b1 = param([4, 2], values(8, 1));
    const b2 = param([3], values(3, 2));
    const groups = (x: Tensor, y: Tensor) => [
      { params: [x], lrMult: 0.25, isLastLayer: false, name: 'backbone' },
      { params: [y], weightDecay: 0, wdMult: 0, isLastLayer: true, name: 'head' },
    ];
    const oa = new AdamW(groups(a1, a2), { betas: [0.9, 0.99], lr: 0.05 });
    const ob = new AdamW(groups(b1, b2), { lr: 1 });
    for (let it = 0; it < 4; it++) {
      oa.paramGroups[0]!.lr = 0.01 * (it + 1);
      oa.paramGroups[1]!.lr = it < 2 ? 0 : 0.03;
      setGrad(a1, values(8, 20 + it));
      if (it !== 1) setGrad(a2, values(3, 30 + it));
      oa.step();
      oa.zeroGrad();
    }
    const path = join(dir, 'adamw.safetensors');
    await oa.save(path);
    noGrad(() => {
      b1.copy_(a1);
      b2.copy_(a2);
    });
    await ob.load(path);
    expect(ob.stepCount).toBe(4);
    expect(ob.betas).toEqual([0.9, 0.99]);
    expect(ob.stateDict().paramGroups).toEqual(oa.stateDict().paramGroups);
    expect(ob.paramGroups[1]).toMatchObject({ lr: 0.03, weightDecay: 0, wdMult: 0, isLastLayer: true, name: 'head' });
    for (let it = 4; it < 7; it++) {
      for (const o of [oa, ob]) o.paramGroups[0]!.lr = 0.01 * (it + 1);
      setGrad(a1, values(8, 20 + it));
      setGrad(b1, values(8, 20 + it));
      setGrad(a2, values(3, 30 + it));
      setGrad(b2, values(3, 30 + it));
      oa.step();
      ob.step();
    }
    expect(b1.toArray()).toEqual(a1.toArray());
    expect(b2.toArray()).toEqual(a2.toArray());
    for (const t of [oa, ob, a1, a2, b1, b2]) t.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('loading mismatched state raises a StateDictError naming the keys and shapes', () => {
    const a = param([2, 3], values(6, 1));
    const b = param([3, 2], values(6, 1));
    const c = param([4], values(4, 1));
    const oa = new AdamW([{ params: [a] }]);
    const ob = new AdamW([{ params: [b, c] }]);
    const oc = new AdamW([{ params: [a] }, { params: [c] }]);
    let e = errorOf(() => ob.loadStateDict(oa.stateDict()));
    expect(e).toBeInstanceOf(StateDictError);
    expect(e.code).toBe('ERR_STATE_DICT');
    expect(e.message).toBe(
      'AdamW.loadStateDict: the optimizer state does not match the parameters\n' +
        'missing (2): state.0.1.exp_avg, state.0.1.exp_avg_sq\n' +
        'shape mismatches (3): state.0.0.exp_avg: expected [3, 2], received [2, 3]; ' +
        'state.0.0.exp_avg_sq: expected [3, 2], received [2, 3]; param_groups.0.steps: expected [2], received [1]',
    );
    e = errorOf(() => oc.loadStateDict(oa.stateDict()));
    expect(e).toBeInstanceOf(StateDictError);
    expect(e.message).toBe('AdamW.loadStateDict: the state dict has 1 parameter groups, the optimizer has 2');
    e = errorOf(() => oa.loadStateDict(ob.stateDict()));
    expect(e.message).toMatch(
      /^AdamW\.loadStateDict: the optimizer state does not match the parameters\nunexpected \(2\): state\.0\.1\.exp_avg, state\.0\.1\.exp_avg_sq\n/,
    );
    // Nothing was changed by the failed loads.
    expect(ob.stepCount).toBe(0);
    for (const t of [oa, ob, oc, a, b, c]) t.dispose();
  });

  test('loading a file that is not an AdamW state raises a CheckpointError', async () => {
    const p = param([2], [1, 2]);
    const opt = new AdamW([p]);
    const path = join(dir, 'not_adamw.safetensors');
    await writeSafetensorsFile(path, { w: { dtype: 'float32', shape: [1], data: new Uint8Array(4) } }, { format: 'pt' });
    await expect(opt.load(path)).rejects.toThrow(CheckpointError);
    await expect(opt.load(path)).rejects.toThrow(`${path}: not an AdamW state file (metadata "format" is "pt", expected "dinov3-ts/adamw")`);
    opt.dispose();
    p.dispose();
  });

  test('the optimizer owns its state: dispose frees it, later use throws', () => {
    const before = memory().liveTensors;
    const p = param([3], [1, 2, 3]);
    const opt = new AdamW([p]);
    expect(memory().liveTensors).toBe(before + 3);
    opt.dispose();
    opt.dispose();
    expect(memory().liveTensors).toBe(before + 1);
    const e = errorOf(() => opt.step());
    expect(e).toBeInstanceOf(DisposedError);
    expect(e.message).toBe('AdamW.step: the optimizer was disposed');
    p.dispose();
  });

  test('`using` disposes the optimizer state at block end', () => {
    const before = memory().liveTensors;
    const p = param([3], [1, 2, 3]);
    {
      using opt = new AdamW([p]);
      expect(opt.isDisposed).toBe(false);
      expect(memory().liveTensors).toBe(before + 3);
    }
    expect(memory().liveTensors).toBe(before + 1);
    p.dispose();
  });

  test('invalid construction and hyperparameters are rejected with exact messages', () => {
    const p = param([2], [1, 2]);
    const i = zeros([2], { dtype: 'int64' });
    const cases: [() => unknown, unknown, string][] = [
      [() => new AdamW([]), TorchRangeError, 'AdamW: got an empty parameter list'],
      [() => new AdamW([p], { lr: -1 }), TorchRangeError, 'AdamW: "lr" must be a finite number >= 0, received -1'],
      [() => new AdamW([p], { betas: [0.9, 1] }), TorchRangeError, 'AdamW: "betas[1]" must be a finite number in [0, 1), received 1'],
      [() => new AdamW([i]), TorchTypeError, 'AdamW: expected "paramGroups[0].params[0]" to be a floating-point Tensor, received int64 Tensor [2]'],
      [
        () => new AdamW([{ params: [p] }, { params: [p] }]),
        TorchRangeError,
        'AdamW: "paramGroups[1].params[0]" is the same Tensor as "paramGroups[0].params[0]"; a parameter may appear only once',
      ],
    ];
    for (const [fn, cls, msg] of cases) {
      const e = errorOf(fn);
      expect(e).toBeInstanceOf(cls as new () => Error);
      expect(e.code).toBe('ERR_INVALID_ARG');
      expect(e.message).toBe(msg);
    }
    const opt = new AdamW([p]);
    opt.paramGroups[0]!.lr = Number.NaN;
    const e = errorOf(() => opt.step());
    expect(e).toBeInstanceOf(TorchRangeError);
    expect(e.message).toBe('AdamW.step: "paramGroups[0].lr" must be a finite number >= 0, received NaN');
    opt.dispose();
    p.dispose();
    i.dispose();
  });
});
