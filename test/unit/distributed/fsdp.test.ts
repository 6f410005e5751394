// Sharded training of a small MLP: 2 Gloo ranks (each with half the global batch) match one process on the whole
// batch, for FULL_SHARD and SHARD_GRAD_OP, with SGD and AdamW; each rank holds half the parameter and optimizer bytes.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import {
  AdamW,
  FullyShardedModule,
  Linear,
  LocalProcessGroup,
  manualSeed,
  memory,
  Module,
  mseLoss,
  randn,
  Generator,
  scope,
  type Tensor,
} from '../../../src/index.js';
import { compileLibrary } from '../lifecycle/compiled_library.js';
import { emitted, runRanks } from './helpers.js';

let lib: { indexUrl: string; cleanup: () => void };
beforeAll(() => {
  lib = compileLibrary();
});
afterAll(() => lib.cleanup());

const STEPS = 5;
const B = 8;

// The model and the loop, shared by the ranks (sharded) and by the one-process reference (plain).
const train = (o: { sharded: boolean; strategy?: string; optim: 'sgd' | 'adamw'; clip?: number }) => `
  class MLP extends lib.Module {
    constructor() {
      super();
      this.fc1 = this.registerModule('fc1', new lib.Linear(6, 8));
      this.fc2 = this.registerModule('fc2', new lib.Linear(8, 8));
      this.fc3 = this.registerModule('fc3', new lib.Linear(8, 3));
      this.scale = this.registerParameter('scale', lib.ones([3]));
    }
    forward(x) { return this.fc3.forward(this.fc2.forward(this.fc1.forward(x).relu()).tanh()).mul(this.scale); }
  }
  lib.manualSeed(${o.sharded ? 'rank' : '0'} * 1000); // different inits on the ranks: syncModuleStates broadcasts rank 0's
  const model = new MLP();
  const pg = ${o.sharded ? 'await lib.initProcessGroup({ timeoutMs: 30000 })' : 'new lib.LocalProcessGroup()'};
  const fsdp = ${o.sharded ? `new lib.FullyShardedModule(model, { group: pg, strategy: '${o.strategy}', units: [model.fc1, model.fc2, model.fc3] })` : 'null'};
  const params = fsdp ? fsdp.shardedParameters() : model.parameters();
  const opt = ${o.optim === 'adamw' ? 'new lib.AdamW(params, { lr: 0.05, weightDecay: 0.1 })' : 'null'};
  const n = ${B} / pg.worldSize;
  const losses = [];
  const norms = [];
  for (let step = 0; step < ${STEPS}; step++) {
    const x = lib.randn([${B}, 6], { generator: new lib.Generator(100 + step) }).narrow(0, pg.rank * n, n);
    const y = lib.randn([${B}, 3], { generator: new lib.Generator(200 + step) }).narrow(0, pg.rank * n, n);
    const loss = lib.mseLoss(model.forward(x), y);
    if (fsdp) fsdp.backward(loss); else loss.backward();
    losses.push(loss.item());
    ${o.clip ? `norms.push((() => { const t = fsdp ? fsdp.clipGradNorm_(${o.clip}) : lib.clipGradNorm(params, ${o.clip}); const v = t.item(); t.dispose(); return v; })());` : ''}
    if (opt) opt.step();
    else lib.noGrad(() => { for (const p of params) p.sub_(p.grad.mul(0.1)); });
    if (!fsdp) model.zeroGrad();
  }
  const sd = fsdp ? fsdp.fullStateDict() : model.stateDict();
  const between = model.parameters().map((p) => p.numel);
  emit({ losses, norms, params: Object.fromEntries([...sd].map(([k, t]) => [k, t.toArray()])), between,
         bytes: fsdp ? fsdp.shardBytes() : null, optBytes: opt ? opt.stateDict().state.flatMap((s) => [...s.expAvg, ...s.expAvgSq]).reduce((a, t) => a + t.numel * 4, 0) : null });
  if (fsdp) pg.destroy();`;

type Out = {
  losses: number[];
  norms: number[];
  params: Record<string, number[]>;
  between: number[];
  bytes: { params: number; grads: number; unshardedParams: number } | null;
  optBytes: number | null;
};

describe('FullyShardedModule', () => {
  for (const optim of ['sgd', 'adamw'] as const) {
    let reference: Out;
    test(`${optim}: one-process reference`, async () => {
      const [r] = await runRanks(1, lib.indexUrl, train({ sharded: false, optim }));
      expect(r!.stderr).toBe('');
      reference = emitted(r!)[0] as Out;
      expect(reference.losses).toHaveLength(STEPS);
    });
    for (const strategy of ['SHARD_GRAD_OP', 'FULL_SHARD'])
      test(`${optim}, ${strategy}: 2 ranks × ${B / 2} samples = 1 process × ${B} (losses and parameters within 1e-5)`, async () => {
        const rs = await runRanks(2, lib.indexUrl, train({ sharded: true, strategy, optim }));
        for (const r of rs) expect({ rank: r.rank, code: r.code, stderr: r.stderr }).toEqual({ rank: r.rank, code: 0, stderr: '' });
        const [a, b] = rs.map((r) => emitted(r)[0] as Out);
        const rel = (x: number, y: number, scale: number) => Math.abs(x - y) / Math.max(scale, 1e-12);
        // The global loss is the mean of the ranks' losses (equal local batches).
        a!.losses.forEach((l, i) => expect(rel((l + b!.losses[i]!) / 2, reference.losses[i]!, Math.abs(reference.losses[i]!))).toBeLessThanOrEqual(1e-5));
        expect(reference.losses[STEPS - 1]).not.toBeCloseTo(reference.losses[0]!, 3); // it trained
        for (const [k, ref] of Object.entries(reference.params)) {
          const scale = Math.max(...ref.map(Math.abs));
          for (const got of [a!.params[k]!, b!.params[k]!]) expect(Math.max(...got.map((v, i) => rel(v, ref[i]!, scale))), k).toBeLessThanOrEqual(1e-5);
        }
        // Between steps the module's parameters are empty; each rank holds half of the (padded) flat parameters.
        expect(a!.between).toEqual([0, 0, 0, 0, 0, 0, 0]);
        const total = reference.params ? Object.values(reference.params).reduce((s, v) => s + v.length, 0) : 0;
        expect(a!.bytes).toEqual({ params: 4 * (28 + 36 + 14 + 2), grads: 4 * (28 + 36 + 14 + 2), unshardedParams: 4 * total });
        if (optim === 'adamw') {
          expect(a!.optBytes! + b!.optBytes!).toBe(2 * 4 * total); // two fp32 moments, split between the ranks
          expect(Math.max(a!.optBytes!, b!.optBytes!)).toBeLessThanOrEqual(4 * (28 + 36 + 14 + 2) * 2);
        }
      });
  }

  test('gradient clipping on the shards (global norm over ranks) = clipGradNorm in one process', async () => {
    const [ref] = (await runRanks(1, lib.indexUrl, train({ sharded: false, optim: 'sgd', clip: 0.05 }))).map((r) => emitted(r)[0] as Out);
    const rs = await runRanks(2, lib.indexUrl, train({ sharded: true, strategy: 'FULL_SHARD', optim: 'sgd', clip: 0.05 }));
    for (const r of rs) expect({ rank: r.rank, code: r.code, stderr: r.stderr }).toEqual({ rank: r.rank, code: 0, stderr: '' });
    const [a, b] = rs.map((r) => emitted(r)[0] as Out);
    expect(ref!.norms.every((n) => n > 0.05)).toBe(true); // every step clipped
    expect(a!.norms).toEqual(b!.norms);
    a!.norms.forEach((n, i) => expect(Math.abs(n - ref!.norms[i]!) / ref!.norms[i]!).toBeLessThanOrEqual(1e-5));
    for (const [k, e] of Object.entries(ref!.params)) {
      const scale = Math.max(...e.map(Math.abs));
      expect(Math.max(...a!.params[k]!.map((v, i) => Math.abs(v - e[i]!) / scale)), k).toBeLessThanOrEqual(1e-5);
    }
  });

  test('an EMA teacher sharded like the student: updated on the shards, its no-grad forward frees its parameters', async () => {
    const body = (sharded: boolean) => `
      class MLP extends lib.Module {
        constructor() {
          super();
          this.fc1 = this.registerModule('fc1', new lib.Linear(6, 8));
          this.fc2 = this.registerModule('fc2', new lib.Linear(8, 3));
        }
        forward(x) { return this.fc2.forward(this.fc1.forward(x).tanh()); }
      }
      lib.manualSeed(5);
      const student = new MLP();
      lib.manualSeed(5);
      const teacher = new MLP();
      const pg = ${sharded ? 'await lib.initProcessGroup({ timeoutMs: 30000 })' : 'new lib.LocalProcessGroup()'};
      const wrap = (m) => ${sharded ? 'new lib.FullyShardedModule(m, { group: pg, units: [m.fc1, m.fc2] })' : 'null'};
      const fs = wrap(student), ft = wrap(teacher);
      const opt = new lib.AdamW(fs ? fs.shardedParameters() : student.parameters(), { lr: 0.05 });
      const probe = lib.randn([5, 6], { generator: new lib.Generator(9) });
      const n = ${B} / pg.worldSize;
      const outs = [];
      for (let step = 0; step < 3; step++) {
        const x = lib.randn([${B}, 6], { generator: new lib.Generator(100 + step) }).narrow(0, pg.rank * n, n);
        const y = lib.randn([${B}, 3], { generator: new lib.Generator(200 + step) }).narrow(0, pg.rank * n, n);
        const loss = lib.mseLoss(student.forward(x), y);
        if (fs) fs.backward(loss); else loss.backward();
        opt.step();
        if (!fs) student.zeroGrad();
        if (fs) lib.emaUpdate(ft.flatShards(), fs.flatShards(), 0.9); else lib.emaUpdate(teacher, student, 0.9);
        outs.push(lib.noGrad(() => teacher.forward(probe)).toArray());
      }
      emit({ outs, between: teacher.parameters().map((p) => p.numel) });
      ${sharded ? 'pg.destroy();' : ''}`;
    const [ref] = (await runRanks(1, lib.indexUrl, body(false))).map((r) => emitted(r)[0] as { outs: number[][] });
    const rs = await runRanks(2, lib.indexUrl, body(true));
    for (const r of rs) expect({ rank: r.rank, code: r.code, stderr: r.stderr }).toEqual({ rank: r.rank, code: 0, stderr: '' });
    for (const r of rs) {
      const got = emitted(r)[0] as { outs: number[][]; between: number[] };
      expect(got.between).toEqual([0, 0, 0, 0]);
      got.outs.forEach((o, step) => {
        const e = ref!.outs[step]!;
        const scale = Math.max(...e.map(Math.abs));
        expect(Math.max(...o.map((v, i) => Math.abs(v - e[i]!) / scale)), `step ${step}`).toBeLessThanOrEqual(1e-5);
      });
    }
    expect(ref!.outs[2]).not.toEqual(ref!.outs[0]); // the teacher moved
  });

  test('a tiny DinoVisionTransformer sharded per block (forwardFeaturesList, forwardList wrapped): 2 ranks = 1 process', async () => {
    const body = (sharded: boolean, strategy = 'SHARD_GRAD_OP') => `
      const cfg = { embed_dim: 32, depth: 3, num_heads: 2, layerscale_init: 0.5, n_storage_tokens: 2, pos_embed_rope_dtype: 'fp32', img_size: 32 };
      const vit = new lib.DinoVisionTransformer(cfg, { generator: new lib.Generator(1) }).eval(); // eval: no RoPE jitter
      const pg = ${sharded ? 'await lib.initProcessGroup({ timeoutMs: 30000 })' : 'new lib.LocalProcessGroup()'};
      const fsdp = ${sharded ? `new lib.FullyShardedModule(vit, { group: pg, strategy: '${strategy}', units: vit.blocks })` : 'null'};
      const params = fsdp ? fsdp.shardedParameters() : vit.parameters();
      const n = 4 / pg.worldSize;
      const losses = [];
      for (let step = 0; step < 2; step++) {
        const x = lib.randn([4, 3, 32, 32], { generator: new lib.Generator(10 + step) }).narrow(0, pg.rank * n, n);
        const y = lib.randn([4, 32], { generator: new lib.Generator(20 + step) }).narrow(0, pg.rank * n, n);
        const [f] = vit.forwardFeaturesList([x]);
        const loss = lib.mseLoss(f.clsToken, y).add(f.patchTokens.pow(2).mean().mul(0.1));
        if (fsdp) fsdp.backward(loss); else loss.backward();
        losses.push(loss.item());
        lib.noGrad(() => { for (const p of params) p.sub_(p.grad.mul(0.5)); });
        if (!fsdp) vit.zeroGrad();
      }
      const sd = fsdp ? fsdp.fullStateDict() : vit.stateDict();
      emit({ losses, params: Object.fromEntries([...sd].map(([k, t]) => [k, t.toArray()])), hooks: fsdp ? fsdp.hookStats() : null });
      ${sharded ? 'pg.destroy();' : ''}`;
    const [ref] = (await runRanks(1, lib.indexUrl, body(false))).map((r) => emitted(r)[0] as { losses: number[]; params: Record<string, number[]> });
    for (const strategy of ['SHARD_GRAD_OP', 'FULL_SHARD']) {
      const rs = await runRanks(2, lib.indexUrl, body(true, strategy));
      for (const r of rs) expect({ rank: r.rank, code: r.code, stderr: r.stderr }).toEqual({ rank: r.rank, code: 0, stderr: '' });
      const [a, b] = rs.map((r) => emitted(r)[0] as { losses: number[]; params: Record<string, number[]>; hooks: unknown });
      // Each block's gradients were reduce-scattered by its hook as backward left it (2 steps), and under FULL_SHARD
      // its parameters gathered again by its hook as backward reached it; the root (patch embedding, norms) is
      // reduced after backward.
      const g = strategy === 'FULL_SHARD' ? 2 : 0;
      expect(a!.hooks).toEqual([
        { unit: '', hookGathers: 0, hookReduces: 0 },
        { unit: 'blocks.0', hookGathers: g, hookReduces: 2 },
        { unit: 'blocks.1', hookGathers: g, hookReduces: 2 },
        { unit: 'blocks.2', hookGathers: g, hookReduces: 2 },
      ]);
      a!.losses.forEach((l, i) =>
        expect(Math.abs((l + b!.losses[i]!) / 2 - ref!.losses[i]!) / ref!.losses[i]!, `${strategy} loss ${i}`).toBeLessThanOrEqual(1e-5),
      );
      expect(Object.keys(a!.params)).toEqual(Object.keys(ref!.params)); // the module's state dict, buffers included
      for (const [k, e] of Object.entries(ref!.params)) {
        const scale = Math.max(...e.map(Math.abs), 1e-6);
        expect(Math.max(...a!.params[k]!.map((v, i) => Math.abs(v - e[i]!) / scale)), `${strategy} ${k}`).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  test('world size 1 (LocalProcessGroup): same as plain training, and no tensor leaks once disposed', () => {
    class Net extends Module {
      readonly a: Linear;
      readonly b: Linear;
      constructor() {
        super();
        this.a = this.registerModule('a', new Linear(4, 5));
        this.b = this.registerModule('b', new Linear(5, 2));
      }
      forward(x: Tensor): Tensor {
        return this.b.forward(this.a.forward(x).relu());
      }
    }
    const run = (sharded: boolean) => {
      manualSeed(3);
      const net = new Net();
      const fsdp = sharded ? new FullyShardedModule(net, { group: new LocalProcessGroup(), strategy: 'FULL_SHARD' }) : null;
      const opt = new AdamW(fsdp ? fsdp.shardedParameters() : net.parameters(), { lr: 0.1 });
      for (let i = 0; i < 3; i++)
        scope(() => {
          const loss = mseLoss(net.forward(randn([6, 4], { generator: new Generator(i) })), randn([6, 2], { generator: new Generator(10 + i) }));
          if (fsdp) fsdp.backward(loss);
          else loss.backward();
          opt.step();
          net.zeroGrad();
        });
      const sd = fsdp ? fsdp.fullStateDict() : new Map([...net.stateDict()].map(([k, t]) => [k, t.clone()]));
      const out = Object.fromEntries([...sd].map(([k, t]) => [k, t.toArray()]));
      for (const t of sd.values()) t.dispose();
      opt.dispose();
      fsdp?.dispose();
      net.dispose();
      return out;
    };
    const before = memory().liveTensors;
    const plain = run(false);
    expect(memory().liveTensors).toBe(before);
    const sharded = run(true);
    expect(Object.keys(sharded)).toEqual(['a.weight', 'a.bias', 'b.weight', 'b.bias']);
    for (const k of Object.keys(plain))
      expect(
        sharded[k]!.map((v, i) => Math.abs(v - plain[k]![i]!)).every((d) => d <= 1e-6),
        k,
      ).toBe(true);
    expect(memory().liveTensors).toBe(before);
  });
});
