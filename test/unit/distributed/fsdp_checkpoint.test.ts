// Sharded checkpoints: save with 2 ranks and resume with 1 (and the reverse) continues exactly as an uninterrupted
// one-process run (parameters and AdamW state); consolidation rebuilds the full parameters without a process group.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import {
  AdamW,
  CheckpointError,
  consolidateShardedCheckpoint,
  FullyShardedModule,
  Linear,
  loadShardedCheckpoint,
  LocalProcessGroup,
  Module,
  saveShardedCheckpoint,
  tensor,
  type Tensor,
} from '../../../src/index.js';
import { compileLibrary } from '../lifecycle/compiled_library.js';
import { emitted, runRanks } from './helpers.js';

let lib: { indexUrl: string; cleanup: () => void };
let tmp: string;
beforeAll(() => {
  lib = compileLibrary();
  tmp = mkdtempSync(join(tmpdir(), 'dinov3-fsdp-ckpt-'));
});
afterAll(() => {
  lib.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

const B = 8;
// Steps [from, to) of AdamW training with two parameter groups (no weight decay on biases), sharded or not; loads
// `load` first and saves to `save` after, when given.
const run = (o: { sharded: boolean; from: number; to: number; load?: string; save?: string }) => `
  class MLP extends lib.Module {
    constructor() {
      super();
      this.fc1 = this.registerModule('fc1', new lib.Linear(6, 8));
      this.fc2 = this.registerModule('fc2', new lib.Linear(8, 3));
      this.scale = this.registerParameter('scale', lib.ones([3]));
    }
    forward(x) { return this.fc2.forward(this.fc1.forward(x).tanh()).mul(this.scale); }
  }
  lib.manualSeed(0);
  const model = new MLP();
  const pg = ${o.sharded ? 'await lib.initProcessGroup({ timeoutMs: 30000 })' : 'new lib.LocalProcessGroup()'};
  const fsdp = ${o.sharded ? 'new lib.FullyShardedModule(model, { group: pg, units: [model.fc1, model.fc2] })' : 'null'};
  const named = fsdp ? fsdp.namedShardedParameters() : model.namedParameters();
  const opt = new lib.AdamW([
    { params: named.filter(([n]) => !n.endsWith('bias')).map(([, t]) => t), weightDecay: 0.1 },
    { params: named.filter(([n]) => n.endsWith('bias')).map(([, t]) => t), weightDecay: 0 },
  ], { lr: 0.05 });
  ${o.load ? `await lib.loadShardedCheckpoint(${JSON.stringify(o.load)}, fsdp, { optimizer: opt });` : ''}
  const n = ${B} / pg.worldSize;
  const snapshots = {};
  for (let step = ${o.from}; step < ${o.to}; step++) {
    const x = lib.randn([${B}, 6], { generator: new lib.Generator(100 + step) }).narrow(0, pg.rank * n, n);
    const y = lib.randn([${B}, 3], { generator: new lib.Generator(200 + step) }).narrow(0, pg.rank * n, n);
    const loss = lib.mseLoss(model.forward(x), y);
    if (fsdp) fsdp.backward(loss); else loss.backward();
    opt.step();
    if (!fsdp) model.zeroGrad();
    const sd = fsdp ? fsdp.fullStateDict() : model.stateDict();
    snapshots[step + 1] = Object.fromEntries([...sd].map(([k, t]) => [k, t.toArray()]));
  }
  ${o.save ? `await lib.saveShardedCheckpoint(${JSON.stringify(o.save)}, fsdp, { optimizer: opt });` : ''}
  emit({ snapshots, stepCount: opt.stepCount });
  if (fsdp) pg.destroy();`;

type Out = { snapshots: Record<number, Record<string, number[]>>; stepCount: number };
const maxRel = (got: Record<string, number[]>, ref: Record<string, number[]>) =>
  Math.max(
    ...Object.entries(ref).map(([k, r]) => {
      const scale = Math.max(...r.map(Math.abs));
      return Math.max(...got[k]!.map((v, i) => Math.abs(v - r[i]!) / scale));
    }),
  );

async function ranks(world: number, body: string): Promise<Out[]> {
  const rs = await runRanks(world, lib.indexUrl, body);
  for (const r of rs) expect({ rank: r.rank, code: r.code, stderr: r.stderr }).toEqual({ rank: r.rank, code: 0, stderr: '' });
  return rs.map((r) => emitted(r)[0] as Out);
}

describe('sharded checkpoints', () => {
  let reference: Out;
  test('one-process reference: 5 AdamW steps', async () => {
    [reference] = (await ranks(1, run({ sharded: false, from: 0, to: 5 }))) as [Out];
    expect(Object.keys(reference.snapshots)).toEqual(['1', '2', '3', '4', '5']);
  });

  test('saved by 2 ranks after 3 steps, resumed by 1 for 2 more = 5 uninterrupted steps', async () => {
    const dir = join(tmp, 'w2');
    const first = await ranks(2, run({ sharded: true, from: 0, to: 3, save: dir }));
    expect(maxRel(first[0]!.snapshots[3]!, reference.snapshots[3]!)).toBeLessThanOrEqual(1e-5);
    expect(readdirSync(dir).sort()).toEqual(['manifest.json', 'shard-0-of-2.safetensors', 'shard-1-of-2.safetensors']);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ format: 'dinov3-ts/fsdp-sharded', version: 1, worldSize: 2, optimizer: { step: 3 } });
    expect(manifest.units.map((u: { name: string; numel: number }) => [u.name, u.numel])).toEqual([
      ['', 3],
      ['fc1', 56],
      ['fc2', 27],
    ]);
    const [resumed] = await ranks(1, run({ sharded: true, from: 3, to: 5, load: dir }));
    expect(resumed!.stepCount).toBe(5);
    expect(maxRel(resumed!.snapshots[5]!, reference.snapshots[5]!)).toBeLessThanOrEqual(1e-5);
  });

  test('saved by 1 rank after 3 steps, resumed by 2 for 2 more = 5 uninterrupted steps', async () => {
    const dir = join(tmp, 'w1');
    await ranks(1, run({ sharded: true, from: 0, to: 3, save: dir }));
    const resumed = await ranks(2, run({ sharded: true, from: 3, to: 5, load: dir }));
    for (const r of resumed) expect(maxRel(r.snapshots[5]!, reference.snapshots[5]!)).toBeLessThanOrEqual(1e-5);
  });

  test('consolidation: the full parameters (or those under a prefix) without a process group', async () => {
    const all = await consolidateShardedCheckpoint(join(tmp, 'w2'));
    expect([...all.keys()]).toEqual(['scale', 'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']); // the module's state-dict order
    const asArrays = Object.fromEntries([...all].map(([k, r]) => [k, [...new Float32Array(r.data.slice().buffer)]]));
    expect(maxRel(asArrays, reference.snapshots[3]!)).toBeLessThanOrEqual(1e-5);
    const out = join(tmp, 'fc1.safetensors');
    const fc1 = await consolidateShardedCheckpoint(join(tmp, 'w2'), { prefix: 'fc1.', out });
    expect([...fc1].map(([k, r]) => [k, r.shape])).toEqual([
      ['weight', [8, 6]],
      ['bias', [8]],
    ]);
    expect(readdirSync(tmp)).toContain('fc1.safetensors');
  });

  test('persistent buffers travel in shard 0 (non-persistent ones do not)', async () => {
    class WithBuffers extends Module {
      readonly fc: Linear;
      readonly periods: Tensor;
      constructor() {
        super();
        this.fc = this.registerModule('fc', new Linear(2, 2));
        this.periods = this.registerBuffer('periods', tensor([1, 2, 4]));
        this.registerBuffer('cache', tensor([7]), false);
      }
      forward(x: Tensor): Tensor {
        return this.fc.forward(x);
      }
    }
    const dir = join(tmp, 'buffers');
    const m = new WithBuffers();
    const fsdp = new FullyShardedModule(m, { group: new LocalProcessGroup(), units: [m.fc] });
    await saveShardedCheckpoint(dir, fsdp);
    m.periods.mul_(10);
    await loadShardedCheckpoint(dir, fsdp);
    expect(m.periods.toArray()).toEqual([1, 2, 4]);
    const sd = await consolidateShardedCheckpoint(dir);
    expect([...sd].map(([k, r]) => [k, r.dtype, r.shape])).toEqual([
      ['periods', 'float32', [3]],
      ['fc.weight', 'float32', [2, 2]],
      ['fc.bias', 'float32', [2]],
    ]);
    fsdp.dispose();
    m.dispose();
  });

  test('a checkpoint of another model is refused with the differences', async () => {
    class Other extends Module {
      readonly fc1: Linear;
      constructor() {
        super();
        this.fc1 = this.registerModule('fc1', new Linear(6, 4));
      }
      forward(x: Tensor): Tensor {
        return this.fc1.forward(x);
      }
    }
    const m = new Other();
    const fsdp = new FullyShardedModule(m, { group: new LocalProcessGroup() });
    const opt = new AdamW(fsdp.shardedParameters());
    const e = await loadShardedCheckpoint(join(tmp, 'w2'), fsdp, { optimizer: opt }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CheckpointError);
    expect((e as Error).message).toBe(
      `${join(tmp, 'w2')}: the checkpoint's units and parameters differ from the module's:\n` +
        '  checkpoint [["",[["scale",[3]]]],["fc1",[["fc1.weight",[8,6]],["fc1.bias",[8]]]],["fc2",[["fc2.weight",[3,8]],["fc2.bias",[3]]]]]\n' +
        '  module     [["",[]],["fc1",[["fc1.weight",[4,6]],["fc1.bias",[4]]]]]',
    );
    await expect(loadShardedCheckpoint(join(tmp, 'nowhere'), fsdp)).rejects.toThrow(/nowhere: no readable manifest\.json/);
    opt.dispose();
    fsdp.dispose();
    m.dispose();
  });
});
