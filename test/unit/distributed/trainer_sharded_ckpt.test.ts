// Sharded checkpoints through the Trainer (each rank its shards + manifests under ckpt_sharded/<iteration>/, rank 0
// the checkpoint folder that completes them): resharding 2 → 1 and 1 → 2 ranks continues exactly as a straight
// 2-rank run (within 1e-5); a rank killed mid-run makes the other fail with an error naming it, after which the
// last checkpoint loads and training resumes to the same result; a stop signal seen by one rank stops all together.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { compileLibrary } from '../lifecycle/compiled_library.js';
import { emitted, runRanks, type RankResult } from './helpers.js';
import { TINY_SHARDED } from '../train/tiny.js';

let lib: { indexUrl: string; cleanup: () => void };
const dirs: string[] = [];
beforeAll(() => {
  lib = compileLibrary();
});
afterAll(() => {
  lib.cleanup();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'dinov3-sharded-ckpt-'));
  dirs.push(d);
  return d;
};

const B = 4;
const ITERS = 6;
const TINY = [...TINY_SHARDED, 'checkpointing.period=2', 'checkpointing.max_to_keep=2'];

interface Out {
  start: number;
  losses: { iteration: number; total_loss: number }[];
  params: Record<string, number[]>;
  fit: { iterations: number; stoppedBy: string };
}

/** Trainer.fit over `world` ranks (world 1: a LocalProcessGroup, sharded over its one rank), rank 0 emits. */
const body = (o: {
  world: number;
  out: string;
  maxIterations: number;
  resume?: boolean;
  killRank?: number;
  killAfter?: number;
  abortRank?: number;
  abortAfter?: number;
  plain?: boolean;
}) => `
  const W = ${o.world};
  const cfg = await lib.loadSSLConfig('ssl_default', ${JSON.stringify(TINY)}.concat(['train.batch_size_per_gpu=' + (${B} / W)]));
  const pg = W > 1 ? await lib.initProcessGroup({ timeoutMs: 30000, heartbeatMs: 200 }) : new lib.LocalProcessGroup();
  const data = new lib.SyntheticBatches({ batchSize: ${B} / W, globalSize: 16, localSize: 8, nLocal: 2, patchSize: 8, seed: 3, rank: pg.rank, worldSize: W });
  const losses = [];
  const ac = new AbortController();
  const t = await lib.Trainer.create(cfg, {
    signal: ac.signal,
    ${o.plain ? '' : "group: pg, sharding: 'SHARD_GRAD_OP',"} seed: 11, data, outDir: ${JSON.stringify(o.out)}, maxIterations: ${o.maxIterations}, resume: ${o.resume ?? false},
    onMetrics: (m) => {
      losses.push({ iteration: m.iteration, total_loss: m.total_loss });
      if (pg.rank === ${o.killRank ?? -1} && m.iteration === ${o.killAfter ?? -1}) process.kill(process.pid, 'SIGKILL');
      if (pg.rank === ${o.abortRank ?? -1} && m.iteration === ${o.abortAfter ?? -1}) ac.abort();
    },
  });
  const start = t.iteration;
  let fit;
  try {
    fit = await t.fit();
  } catch (e) {
    emit({ error: { name: e.name, code: e.code, failedRanks: e.failedRanks, message: e.message } });
    process.exit(3);
  }
  const params = {};
  if (t.sharded) for (const [side, fs] of [['student', t.sharded.student], ['teacher', t.sharded.teacher]])
    for (const [k, f] of fs) for (const [n, v] of f.fullStateDict()) params[side + '.' + k + '.' + n] = Array.from(v.toFloat32Array());
  if (pg.rank === 0) emit({ start, losses, params, fit: { iterations: fit.iterations, stoppedBy: fit.stoppedBy } });
  else emit({ fit: { iterations: fit.iterations, stoppedBy: fit.stoppedBy } });
  t.dispose();
  pg.destroy();`;

const ok = (rs: RankResult[]) => {
  for (const r of rs) expect({ rank: r.rank, code: r.code, stderr: r.stderr.slice(-3000) }).toEqual({ rank: r.rank, code: 0, stderr: '' });
};
const run = async (o: Parameters<typeof body>[0]): Promise<RankResult[]> => runRanks(o.world, lib.indexUrl, body(o), { timeoutMs: 240_000 });

function expectSameContinuation(got: Out, ref: Out, from: number): void {
  expect(got.start).toBe(from);
  expect(got.losses.map((l) => l.iteration)).toEqual(ref.losses.slice(from).map((l) => l.iteration));
  const bad: string[] = [];
  got.losses.forEach((l, i) => {
    const e = ref.losses[from + i]!.total_loss;
    if (!(Math.abs(l.total_loss - e) / Math.abs(e) <= 1e-5)) bad.push(`iteration ${l.iteration}: ${l.total_loss} vs ${e}`);
  });
  expect(Object.keys(got.params).sort()).toEqual(Object.keys(ref.params).sort());
  for (const [k, e] of Object.entries(ref.params)) {
    const scale = Math.max(...e.map(Math.abs), 1e-6);
    const rel = Math.max(...got.params[k]!.map((v, i) => Math.abs(v - e[i]!) / scale));
    if (!(rel <= 1e-5)) bad.push(`${k}: ${rel.toExponential(2)}`);
  }
  expect(bad).toEqual([]);
}

describe('Trainer: sharded checkpoints, resharding, a killed rank', () => {
  let straight: Out;
  test(`straight: 2 ranks, ${ITERS} iterations, a sharded checkpoint every 2`, { timeout: 300_000 }, async () => {
    const out = tmp();
    const rs = await run({ world: 2, out, maxIterations: ITERS });
    ok(rs);
    straight = emitted(rs[0]!)[0] as Out;
    expect(straight.fit).toEqual({ iterations: ITERS, stoppedBy: 'end' });
    expect(straight.losses.map((l) => l.iteration)).toEqual([0, 1, 2, 3, 4, 5]);
    // max_to_keep=2: the checkpoint folders and their shards of iterations 3 and 5 are what is left.
    expect(readdirSync(join(out, 'ckpt')).sort()).toEqual(['3', '5']);
    expect(readdirSync(join(out, 'ckpt_sharded')).sort()).toEqual(['3', '5']);
    expect(readdirSync(join(out, 'ckpt_sharded', '5')).sort()).toEqual([
      'student.backbone',
      'student.dino_head',
      'student.ibot_head',
      'teacher.backbone',
      'teacher.dino_head',
      'teacher.ibot_head',
    ]);
    expect(readdirSync(join(out, 'ckpt_sharded', '5', 'student.backbone')).sort()).toEqual([
      'manifest.json',
      'shard-0-of-2.safetensors',
      'shard-1-of-2.safetensors',
    ]);
  });

  test('2 ranks → checkpoint at 3 iterations → 1 rank resumes: the same continuation (within 1e-5)', { timeout: 300_000 }, async () => {
    const out = tmp();
    ok(await run({ world: 2, out, maxIterations: 3 }));
    const rs = await run({ world: 1, out, maxIterations: ITERS, resume: true });
    ok(rs);
    expectSameContinuation(emitted(rs[0]!)[0] as Out, straight, 3);
  });

  test('1 rank → checkpoint at 3 iterations → 2 ranks resume: the same continuation (within 1e-5)', { timeout: 300_000 }, async () => {
    const out = tmp();
    ok(await run({ world: 1, out, maxIterations: 3 }));
    const rs = await run({ world: 2, out, maxIterations: ITERS, resume: true });
    ok(rs);
    expectSameContinuation(emitted(rs[0]!)[0] as Out, straight, 3);
  });

  test('rank 1 killed after iteration 4: rank 0 fails naming it within 60 s; the run resumes from its last checkpoint to the same result', {
    timeout: 300_000,
  }, async () => {
    const out = tmp();
    const rs = await run({ world: 2, out, maxIterations: ITERS, killRank: 1, killAfter: 4 });
    expect(rs[1]!.signal).toBe('SIGKILL');
    expect(rs[0]!.code).toBe(3);
    const { error } = (emitted(rs[0]!) as { error: { name: string; code: string; failedRanks: number[]; message: string } }[])[0]!;
    expect(error, JSON.stringify(error)).toMatchObject({ name: 'DistributedError', code: 'ERR_DIST_PEER', failedRanks: [1] });
    expect(error.message).toMatch(/^rank 0: rank 1 stopped responding \(process exited, killed or hung\)/);
    expect(rs[0]!.ms - rs[1]!.ms).toBeLessThan(60_000);
    // The last complete checkpoint is iteration 3 (4 iterations done); resuming runs 4 and 5 as the straight run did.
    expect(readdirSync(join(out, 'ckpt')).filter((d) => /^\d+$/.test(d))).toEqual(['1', '3']);
    const again = await run({ world: 2, out, maxIterations: ITERS, resume: true });
    ok(again);
    expectSameContinuation(emitted(again[0]!)[0] as Out, straight, 4);
  });

  test('a stop signal on one rank (rank 1, after iteration 2) stops every rank after the same iteration, with a checkpoint; resuming continues exactly', {
    timeout: 300_000,
  }, async () => {
    const out = tmp();
    const rs = await run({ world: 2, out, maxIterations: ITERS, abortRank: 1, abortAfter: 2 });
    ok(rs);
    const [a, b] = rs.map((r) => (emitted(r)[0] as Out).fit);
    expect(a).toEqual({ iterations: 3, stoppedBy: 'abort' });
    expect(b).toEqual({ iterations: 3, stoppedBy: 'abort' });
    expect(readdirSync(join(out, 'ckpt')).filter((d) => /^\d+$/.test(d))).toEqual(['1', '2']);
    const again = await run({ world: 2, out, maxIterations: ITERS, resume: true });
    ok(again);
    expectSameContinuation(emitted(again[0]!)[0] as Out, straight, 3);
  });

  test('an unsharded one-process run (the plain path) → checkpoint at 3 iterations → 2 sharded ranks resume it: the same continuation', {
    timeout: 300_000,
  }, async () => {
    const out = tmp();
    ok(await run({ world: 1, out, maxIterations: 3, plain: true }));
    expect(readdirSync(out)).not.toContain('ckpt_sharded');
    const rs = await run({ world: 2, out, maxIterations: ITERS, resume: true });
    ok(rs);
    expectSameContinuation(emitted(rs[0]!)[0] as Out, straight, 3);
  });

  test('a sharded checkpoint is refused by an unsharded trainer, with the way to resume it', { timeout: 300_000 }, async () => {
    const out = tmp();
    ok(await run({ world: 2, out, maxIterations: 2 }));
    const [r] = await runRanks(
      1,
      lib.indexUrl,
      `
      const cfg = await lib.loadSSLConfig('ssl_default', ${JSON.stringify(TINY)}.concat(['train.batch_size_per_gpu=${B}']));
      try { await lib.Trainer.create(cfg, { outDir: ${JSON.stringify(out)}, resume: true }); emit({ unexpected: true }); }
      catch (e) { emit({ name: e.name, message: e.message }); }`,
    );
    const [e] = emitted(r!) as { name: string; message: string }[];
    expect(e!.name).toBe('CheckpointError');
    expect(e!.message).toMatch(
      /ckpt\/1: a sharded checkpoint \(2 ranks\); resume it with sharding \(any world size; Trainer option "sharding" for one process\)$/,
    );
  });
});
