// compute_precision.param_dtype=bf16 in one process: the student computes on a bf16 copy of its fp32 master weights
// (the official FSDP2 MixedPrecisionPolicy), and the gradients reach the fp32 weights that clipping, AdamW and the
// EMA use. Checked against the same steps in fp32: loss terms within bf16 tolerance, gradients pointing the same way,
// the model's state and random streams untouched by the copy, and runs repeatable bit for bit.
import { describe, expect, test } from 'vitest';

import { getRngState, manualSeed } from '../../../src/tensor/creation.js';
import { loadSSLConfig } from '../../../src/train/config.js';
import { SyntheticBatches } from '../../../src/train/synthetic.js';
import { scheduleValues, trainIteration } from '../../../src/train/train.js';
import { Trainer } from '../../../src/train/trainer.js';
import { tinyOverrides } from './tiny.js';

// KoLeo is left out: at init every CLS token is nearly the same vector (LayerScale 1e-5), so its nearest-neighbour
// distances are differences of nearly equal numbers, which bf16 rounding decides.
const TINY = [...tinyOverrides({ dropPath: 0.1 }), 'dino.koleo_loss_weight=0'];

interface Run {
  losses: { total: number; dino: number; ibot: number }[];
  grads: Float32Array[];
  gradDtypes: string[];
  paramDtypes: string[];
  stateKeys: string[];
  nParams: number;
  params: Float32Array[];
  rng: Uint8Array;
}

async function run(pd: 'fp32' | 'bf16', n: number): Promise<Run> {
  manualSeed(0);
  const cfg = await loadSSLConfig('ssl_default', [...TINY, `compute_precision.param_dtype=${pd}`]);
  const t = await Trainer.create(cfg, {});
  const data = new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 7 });
  const out: Run = { losses: [], grads: [], gradDtypes: [], paramDtypes: [], stateKeys: [], nParams: 0, params: [], rng: new Uint8Array() };
  const student = t.model.student.parameters();
  for (let i = 0; i < n; i++) {
    const m = trainIteration(t.model, t.optimizer, data.batch(i), {
      iteration: i,
      values: scheduleValues(t.schedules, i),
      clipGrad: cfg.optim.clip_grad,
      afterBackward: () => {
        if (i > 0) return;
        for (const p of student) {
          const g = p.grad;
          out.gradDtypes.push(g ? g.dtype : 'none');
          out.grads.push(g ? g.toFloat32Array() : new Float32Array());
          g?.dispose();
        }
      },
    });
    out.losses.push({ total: m.total_loss, dino: m.dino_global_crops_loss, ibot: m.ibot_loss });
  }
  const all = [...t.model.student.parameters(), ...t.model.teacher.parameters()];
  out.paramDtypes = [...new Set(all.map((p) => p.dtype))];
  out.params = all.map((p) => p.toFloat32Array());
  out.stateKeys = [...t.model.stateDict().keys()];
  out.nParams = t.model.parameters().length;
  const g = t.generator.getState();
  out.rng = Uint8Array.from(g.toArray() as number[]);
  g.dispose();
  const glob = getRngState();
  out.rng = Uint8Array.from([...out.rng, ...(glob.toArray() as number[])]);
  glob.dispose();
  t.dispose();
  return out;
}

const cosine = (a: Float32Array, b: Float32Array) => {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
};

describe('bf16 compute over fp32 master weights (one process)', () => {
  test('masters stay float32 with float32 gradients; the losses and gradients follow fp32 within bf16 tolerance', async () => {
    const a = await run('fp32', 3);
    const b = await run('bf16', 3);
    expect(b.paramDtypes).toEqual(['float32']);
    expect(b.gradDtypes.every((d) => d === 'float32')).toBe(true);
    // the compute copy is not part of the model: same parameters and state as in fp32
    expect(b.stateKeys).toEqual(a.stateKeys);
    expect(b.nParams).toBe(a.nParams);
    // building the copy leaves the random streams (model generator, global) where fp32 training leaves them
    expect(Buffer.from(b.rng).equals(Buffer.from(a.rng))).toBe(true);
    for (let i = 0; i < 3; i++) {
      for (const k of ['total', 'dino', 'ibot'] as const) expect(Math.abs(b.losses[i]![k] - a.losses[i]![k]) / a.losses[i]![k]).toBeLessThan(1e-2);
    }
    // the first backward: every gradient of the fp32 run is there, pointing the same way (the DINO head's last layer
    // is frozen in the first epoch: no gradient in either run)
    expect(b.grads.map((g) => g.length)).toEqual(a.grads.map((g) => g.length));
    const flat = (gs: Float32Array[]) => Float32Array.from(gs.flatMap((g) => [...g]));
    const fa = flat(a.grads);
    const fb = flat(b.grads);
    expect(fa.length).toBeGreaterThan(10_000);
    expect(cosine(fa, fb)).toBeGreaterThan(0.99);
    const norm = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0));
    expect(Math.abs(norm(fb) / norm(fa) - 1)).toBeLessThan(0.05);
    // and the weights after three steps are still close
    expect(cosine(flat(b.params), flat(a.params))).toBeGreaterThan(0.9999);
  });

  test('bf16 runs repeat bit for bit', async () => {
    const a = await run('bf16', 2);
    const b = await run('bf16', 2);
    expect(b.losses).toEqual(a.losses);
    for (let i = 0; i < a.params.length; i++) expect(Buffer.from(b.params[i]!.buffer).equals(Buffer.from(a.params[i]!.buffer))).toBe(true);
  });
});
