// Sharded checkpoints of a FullyShardedModule (and its AdamW): every rank writes its flat shards to
// shard-<rank>-of-<W>.safetensors, rank 0 writes manifest.json (the units and their parameters' places in the flat
// buffers). Loading works at any world size (each rank reads the old shards that overlap its new range), and
// `consolidateShardedCheckpoint` rebuilds the full parameters without any process group (e.g. the backbone for
// feature extraction). Official counterpart: dinov3/checkpointer/checkpointer.py (torch.distributed.checkpoint).
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { atomicWriteFile, readSafetensorsFile, writeSafetensorsFile } from '../io/safetensors.js';
import type { RawTensor } from '../io/raw_tensor.js';
import { CheckpointError } from '../native/errors.js';
import type { AdamW } from '../optim/adamw.js';
import { fromBuffer, zeros } from '../tensor/creation.js';
import { noGrad } from '../tensor/grad_mode.js';
import { expectObject, expectOptions, expectPath } from '../tensor/args.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { FlatUnitInfo, FullyShardedModule } from './fsdp.js';
import { zeros_ } from '../nn/init.js';
import type { Module } from '../nn/module.js';

const FORMAT = 'dinov3-ts/fsdp-sharded';

interface ManifestUnit {
  name: string;
  numel: number;
  segments: { name: string; shape: number[]; offset: number; numel: number }[];
}

interface Manifest {
  format: string;
  version: 1;
  worldSize: number;
  units: ManifestUnit[];
  /** The module's state-dict keys in order (parameters and persistent buffers; the buffers live in shard 0). */
  keys: string[];
  /** AdamW step count, betas, eps and group hyperparameters (without the per-parameter steps), when saved. */
  optimizer: { step: number; betas: [number, number]; eps: number; paramGroups: Record<string, unknown>[] } | null;
}

const shardFile = (dir: string, rank: number, world: number) => join(dir, `shard-${rank}-of-${world}.safetensors`);

function raw(t: Tensor): RawTensor {
  const d = t.data();
  return { dtype: t.dtype, shape: t.shape, data: new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice() };
}

function f32(r: RawTensor | undefined, what: string): Float32Array {
  if (!r || r.dtype !== 'float32' || r.shape.length !== 1) throw new CheckpointError(`${what}: missing or not a 1-D float32 tensor`);
  const copy = r.data.slice();
  return new Float32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
}

/** For each (group, index) of the optimizer: which shard view of which unit it is. */
function optimizerSlots(opt: AdamW, units: readonly FlatUnitInfo[]): Map<Tensor, { g: number; i: number }> {
  const slots = new Map<Tensor, { g: number; i: number }>();
  opt.paramGroups.forEach((grp, g) => grp.params.forEach((p, i) => slots.set(p, { g, i })));
  for (const u of units)
    for (const v of u.shardViews)
      if (!slots.has(v.view))
        throw new CheckpointError(`sharded checkpoint: the optimizer does not hold the shard of "${v.name}" (build it from fsdp.shardedParameters())`);
  return slots;
}

/**
 * Writes this rank's shards (and the optimizer's moments in the same flat layout) to `dir`; rank 0 also writes the
 * manifest. Resolves on every rank once every rank has written (a barrier). All files are written atomically.
 */
export async function saveShardedCheckpoint<M extends Module>(dir: string, fsdp: FullyShardedModule<M>, o: { optimizer?: AdamW } = {}): Promise<void> {
  expectPath('saveShardedCheckpoint', 'dir', dir);
  expectObject('saveShardedCheckpoint', 'fsdp', fsdp);
  expectObject('saveShardedCheckpoint', 'fsdp.group', fsdp.group);
  o = expectOptions('saveShardedCheckpoint', 'options', o) ?? {};
  const { rank, worldSize } = fsdp.group;
  const units = fsdp.flatUnits;
  await mkdir(dir, { recursive: true });
  const tensors = new Map<string, RawTensor>();
  const steps: Record<string, number> = {};
  let optimizer: Manifest['optimizer'] = null;
  units.forEach((u, k) => tensors.set(`unit.${k}.params`, raw(u.shard)));
  if (o.optimizer) {
    const sd = o.optimizer.stateDict();
    const slots = optimizerSlots(o.optimizer, units);
    units.forEach((u, k) =>
      scope(() => {
        const m = zeros([u.shardSize]);
        const v = zeros([u.shardSize]);
        for (const sv of u.shardViews) {
          const { g, i } = slots.get(sv.view)!;
          const n = sv.view.numel;
          noGrad(() => {
            m.narrow(0, sv.shardOffset, n).copy_(sd.state[g]!.expAvg[i]!);
            v.narrow(0, sv.shardOffset, n).copy_(sd.state[g]!.expAvgSq[i]!);
          });
          steps[sv.name] = sd.paramGroups[g]!.steps[i]!;
        }
        tensors.set(`unit.${k}.exp_avg`, raw(m));
        tensors.set(`unit.${k}.exp_avg_sq`, raw(v));
      }),
    );
    optimizer = { step: sd.step, betas: sd.betas, eps: sd.eps, paramGroups: sd.paramGroups.map(({ steps: _s, ...hyper }) => hyper) };
  }
  if (rank === 0) for (const [k, t] of fsdp.module.namedBuffers('', true)) tensors.set(`buffer.${k}`, raw(t));
  await writeSafetensorsFile(shardFile(dir, rank, worldSize), tensors, { format: FORMAT, rank: String(rank), steps: JSON.stringify(steps) });
  if (rank === 0) {
    const manifest: Manifest = {
      format: FORMAT,
      version: 1,
      worldSize,
      units: units.map((u) => ({ name: u.name, numel: u.numel, segments: u.segments.map((s) => ({ ...s })) })),
      keys: [...fsdp.module.stateDict().keys()],
      optimizer,
    };
    await atomicWriteFile(join(dir, 'manifest.json'), [Buffer.from(JSON.stringify(manifest, null, 1) + '\n')]);
  }
  await fsdp.group.barrier().wait();
}

async function readManifest(dir: string): Promise<Manifest> {
  let m: Manifest;
  try {
    m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  } catch (e) {
    throw new CheckpointError(`${dir}: no readable manifest.json (${(e as Error).message})`);
  }
  if (m.format !== FORMAT || m.version !== 1 || !Number.isInteger(m.worldSize) || !Array.isArray(m.units))
    throw new CheckpointError(
      `${dir}/manifest.json: not a sharded checkpoint of this version (format ${JSON.stringify(m.format)}, version ${JSON.stringify(m.version)})`,
    );
  return m;
}

/** Reads the elements [lo, hi) of unit `k`'s flat `key` buffer from the old shards that hold them. */
async function readRange(
  dir: string,
  m: Manifest,
  files: Map<number, Promise<Awaited<ReturnType<typeof readSafetensorsFile>>>>,
  k: number,
  key: string,
  lo: number,
  hi: number,
): Promise<Float32Array> {
  const out = new Float32Array(Math.max(0, hi - lo));
  const S = Math.max(1, Math.ceil(m.units[k]!.numel / m.worldSize));
  for (let r = Math.floor(lo / S); r < m.worldSize && r * S < hi; r++) {
    if (!files.has(r)) files.set(r, readSafetensorsFile(shardFile(dir, r, m.worldSize)));
    const f = await files.get(r)!;
    const data = f32(f.tensors.get(`unit.${k}.${key}`), `${shardFile(dir, r, m.worldSize)}: unit.${k}.${key}`);
    const a = Math.max(lo, r * S);
    const b = Math.min(hi, (r + 1) * S);
    out.set(data.subarray(a - r * S, b - r * S), a - lo);
  }
  return out;
}

/**
 * Loads a checkpoint written by `saveShardedCheckpoint` at any world size into `fsdp` (and `optimizer`: moments,
 * per-parameter steps, step count, betas, eps). The units and parameters must be the same (names, shapes, order).
 * @throws CheckpointError for a missing or different checkpoint.
 */
export async function loadShardedCheckpoint<M extends Module>(dir: string, fsdp: FullyShardedModule<M>, o: { optimizer?: AdamW } = {}): Promise<void> {
  expectPath('loadShardedCheckpoint', 'dir', dir);
  expectObject('loadShardedCheckpoint', 'fsdp', fsdp);
  o = expectOptions('loadShardedCheckpoint', 'options', o) ?? {};
  const m = await readManifest(dir);
  const units = fsdp.flatUnits;
  const describeUnits = (us: readonly { name: string; segments: readonly { name: string; shape: number[] }[] }[]) =>
    JSON.stringify(us.map((u) => [u.name, u.segments.map((s) => [s.name, s.shape])]));
  if (describeUnits(m.units) !== describeUnits(units))
    throw new CheckpointError(
      `${dir}: the checkpoint's units and parameters differ from the module's:\n  checkpoint ${describeUnits(m.units)}\n  module     ${describeUnits(units)}`,
    );
  if (o.optimizer && !m.optimizer) throw new CheckpointError(`${dir}: the checkpoint has no optimizer state`);
  const files = new Map<number, Promise<Awaited<ReturnType<typeof readSafetensorsFile>>>>();
  const { rank } = fsdp.group;
  const slots = o.optimizer ? optimizerSlots(o.optimizer, units) : null;
  const sd = o.optimizer?.stateDict();
  for (let k = 0; k < units.length; k++) {
    const u = units[k]!;
    const lo = rank * u.shardSize;
    const hi = Math.min(u.numel, lo + u.shardSize);
    const put = (t: Tensor, values: Float32Array) =>
      noGrad(() =>
        scope(() => {
          zeros_(t);
          if (values.length) t.narrow(0, 0, values.length).copy_(fromBuffer(values, 'float32', [values.length]));
        }),
      );
    put(u.shard, await readRange(dir, m, files, k, 'params', lo, hi));
    if (slots && sd) {
      const ma = await readRange(dir, m, files, k, 'exp_avg', lo, hi);
      const va = await readRange(dir, m, files, k, 'exp_avg_sq', lo, hi);
      for (const sv of u.shardViews) {
        const { g, i } = slots.get(sv.view)!;
        const n = sv.view.numel;
        noGrad(() =>
          scope(() => {
            sd.state[g]!.expAvg[i]!.copy_(fromBuffer(ma.subarray(sv.shardOffset, sv.shardOffset + n), 'float32', [n]).view(sd.state[g]!.expAvg[i]!.shape));
            sd.state[g]!.expAvgSq[i]!.copy_(fromBuffer(va.subarray(sv.shardOffset, sv.shardOffset + n), 'float32', [n]).view(sd.state[g]!.expAvgSq[i]!.shape));
          }),
        );
      }
    }
  }
  // Persistent buffers, from shard 0.
  const buffers = fsdp.module.namedBuffers('', true);
  if (buffers.length) {
    if (!files.has(0)) files.set(0, readSafetensorsFile(shardFile(dir, 0, m.worldSize)));
    const f0 = await files.get(0)!;
    for (const [k, t] of buffers) {
      const r = f0.tensors.get(`buffer.${k}`);
      if (!r) throw new CheckpointError(`${shardFile(dir, 0, m.worldSize)}: the buffer "${k}" is missing`);
      noGrad(() => scope(() => t.copy_(fromBuffer(r.data.slice(), r.dtype, r.shape))));
    }
  }
  if (o.optimizer && sd && m.optimizer) {
    // Per-parameter steps: from any old shard that held part of the parameter (they agree).
    const steps = new Map<string, number>();
    for (let r = 0; r < m.worldSize; r++) {
      if (!files.has(r)) files.set(r, readSafetensorsFile(shardFile(dir, r, m.worldSize)));
      const saved = JSON.parse((await files.get(r)!).metadata.steps ?? '{}') as Record<string, number>;
      for (const [name, n] of Object.entries(saved)) steps.set(name, n);
    }
    for (const u of units)
      for (const sv of u.shardViews) {
        const { g, i } = slots!.get(sv.view)!;
        sd.paramGroups[g]!.steps[i] = steps.get(sv.name) ?? 0;
      }
    sd.step = m.optimizer.step;
    sd.betas = m.optimizer.betas;
    sd.eps = m.optimizer.eps;
    sd.paramGroups.forEach((grp, g) => Object.assign(grp, m.optimizer!.paramGroups[g] ?? {}));
    o.optimizer.loadStateDict(sd);
  }
}

/**
 * The module's state dict stored in a sharded checkpoint (full parameters and persistent buffers, in the module's
 * key order; no process group needed). With `prefix`, only the
 * keys under it, with the prefix removed (e.g. 'backbone.' for the backbone); with `out`, also written there as one
 * .safetensors file (atomically).
 */
export async function consolidateShardedCheckpoint(dir: string, o: { prefix?: string; out?: string } = {}): Promise<Map<string, RawTensor>> {
  expectPath('consolidateShardedCheckpoint', 'dir', dir);
  o = expectOptions('consolidateShardedCheckpoint', 'options', o) ?? {};
  const m = await readManifest(dir);
  const files = new Map<number, Promise<Awaited<ReturnType<typeof readSafetensorsFile>>>>();
  const all = new Map<string, RawTensor>();
  for (let k = 0; k < m.units.length; k++) {
    const u = m.units[k]!;
    const flat = await readRange(dir, m, files, k, 'params', 0, u.numel);
    for (const s of u.segments) all.set(s.name, { dtype: 'float32', shape: s.shape, data: new Uint8Array(flat.slice(s.offset, s.offset + s.numel).buffer) });
  }
  if (!files.has(0)) files.set(0, readSafetensorsFile(shardFile(dir, 0, m.worldSize)));
  for (const [name, r] of (await files.get(0)!).tensors) if (name.startsWith('buffer.')) all.set(name.slice(7), { ...r, data: r.data.slice() });
  const result = new Map<string, RawTensor>();
  for (const key of m.keys ?? [...all.keys()]) {
    const r = all.get(key);
    if (!r) throw new CheckpointError(`${dir}: "${key}" is listed in manifest.json but stored in no shard`);
    if (o.prefix === undefined) result.set(key, r);
    else if (key.startsWith(o.prefix)) result.set(key.slice(o.prefix.length), r);
  }
  if (o.out) await writeSafetensorsFile(o.out, result, { format: 'pt' });
  return result;
}
