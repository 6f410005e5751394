// Gloo groups of two processes on 127.0.0.1 (torchrun-style environment): exact collectives through the synchronous
// and the awaited paths, the distributed Sinkhorn-Knopp and KoLeo equal to one process on the concatenated batch,
// and a killed rank reported by name.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { Generator, koleoLossDistributed, LocalProcessGroup, randn, scope, sinkhornKnopp } from '../../../src/index.js';
import { compileLibrary } from '../lifecycle/compiled_library.js';
import { emitted, runRanks } from './helpers.js';

let lib: { indexUrl: string; cleanup: () => void };
beforeAll(() => {
  lib = compileLibrary();
});
afterAll(() => lib.cleanup());

const ok = (rs: Awaited<ReturnType<typeof runRanks>>) => {
  for (const r of rs) expect({ rank: r.rank, code: r.code, stderr: r.stderr }).toEqual({ rank: r.rank, code: 0, stderr: '' });
};

describe('two Gloo processes', () => {
  test('collectives: exact values (sync and awaited), int64 and float64, destroy', async () => {
    const rs = await runRanks(
      2,
      lib.indexUrl,
      `
      const pg = await lib.initProcessGroup({ timeoutMs: 20000 });
      const out = { rank: pg.rank, world: pg.worldSize, backend: pg.backend, localRank: pg.localRank };
      const a = lib.tensor([rank + 1, 2 * rank, 5], { dtype: 'int64' });
      pg.allReduce(a).waitSync();                       // sum, blocking
      out.sum = a.toArray();
      const m = lib.tensor([rank === 0 ? 9 : 1, rank === 0 ? -1 : 4], { dtype: 'float64' });
      await pg.allReduce(m, 'max').wait();
      out.max = m.toArray();
      const mn = lib.tensor([rank, 3 - rank]);
      await pg.allReduce(mn, 'min').wait();
      out.min = mn.toArray();
      const avg = lib.tensor([rank, 1]);
      pg.allReduce(avg, 'avg').waitSync();
      out.avg = avg.toArray();
      const g = lib.zeros([4, 3]);
      await pg.allGatherInto(g, lib.tensor([[rank, 1, 2], [3, 4, rank * 10]])).wait();
      out.gather = g.toArray();
      out.gatherList = pg.allGather(lib.tensor([rank + 0.5])).map((t) => t.toArray());
      const rsOut = lib.zeros([2]);
      await pg.reduceScatter(rsOut, lib.tensor([1, 2, 3, 4]).mul(rank + 1), 'avg').wait();
      out.reduceScatterAvg = rsOut.toArray();
      const b = lib.tensor([rank === 0 ? 3.25 : 0, 7]);
      pg.broadcast(b, 0).waitSync();
      out.broadcast = b.toArray();
      // overlap: issue two, compute, then wait
      const w1 = pg.allReduce(lib.ones([1000]).mul(rank + 1));
      const w2 = pg.barrier();
      const local = lib.randn([64, 64]).matmul(lib.randn([64, 64])).shape;
      await Promise.all([w1.wait(), w2.wait()]);
      out.overlap = local;
      pg.destroy();
      pg.destroy();
      try { pg.barrier(); } catch (e) { out.after = [e.name, e.code, e.message]; }
      emit(out);`,
    );
    ok(rs);
    const [r0, r1] = rs.map((r) => emitted(r)[0] as Record<string, unknown>);
    const common = {
      world: 2,
      backend: 'gloo',
      sum: [3, 2, 10],
      max: [9, 4],
      min: [0, 2],
      avg: [0.5, 1],
      gather: [0, 1, 2, 3, 4, 0, 1, 1, 2, 3, 4, 10],
      gatherList: [[0.5], [1.5]],
      broadcast: [3.25, 7],
      overlap: [64, 64],
      after: ['DistributedError', 'ERR_DIST_BACKEND', 'barrier: the process group has been destroyed'],
    };
    // reduce-scatter (avg): rank r gets the mean over ranks of rows r: [(1+2)/2·[1, 2], (1+2)/2·[3, 4]].
    expect(r0).toEqual({ ...common, rank: 0, localRank: 0, reduceScatterAvg: [1.5, 3] });
    expect(r1).toEqual({ ...common, rank: 1, localRank: 1, reduceScatterAvg: [4.5, 6] });
  });

  test('distributed Sinkhorn-Knopp and KoLeo on 2 ranks equal one process on the concatenated batch', async () => {
    const B = 12;
    const D = 16;
    const rs = await runRanks(
      2,
      lib.indexUrl,
      `
      const pg = await lib.initProcessGroup({ timeoutMs: 20000 });
      const n = ${B} / world;
      const logits = lib.randn([${B}, 10], { generator: new lib.Generator(7) }).narrow(0, rank * n, n).contiguous();
      const q = lib.sinkhornKnopp(logits, 0.1, { group: pg });
      const x = lib.randn([${B}, ${D}], { generator: new lib.Generator(8) }).narrow(0, rank * n, n).contiguous().requiresGrad_();
      const loss = lib.koleoLossDistributed(x, { group: pg });
      loss.backward();
      emit({ q: q.toArray(), loss: loss.item(), grad: x.grad.toArray() });
      pg.destroy();`,
    );
    ok(rs);
    const got = rs.map((r) => emitted(r)[0] as { q: number[]; loss: number; grad: number[] });
    scope(() => {
      const local = new LocalProcessGroup();
      const q = sinkhornKnopp(randn([B, 10], { generator: new Generator(7) }), 0.1, { group: local }).toArray();
      const x = randn([B, D], { generator: new Generator(8) }).requiresGrad_();
      const loss = koleoLossDistributed(x, { group: local });
      loss.backward();
      const grad = x.grad!.toArray();
      const maxDiff = (a: number[], b: number[]) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
      const half = (B / 2) * 10;
      expect(maxDiff(got[0]!.q, q.slice(0, half))).toBeLessThanOrEqual(1e-6);
      expect(maxDiff(got[1]!.q, q.slice(half))).toBeLessThanOrEqual(1e-6);
      // The one-process loss is the mean of the ranks' losses (equal local batches).
      expect(Math.abs((got[0]!.loss + got[1]!.loss) / 2 - loss.item())).toBeLessThanOrEqual(1e-6);
      // Each rank's gradient is the sum over ranks' losses (the gather's backward reduce-scatters); data-parallel
      // averaging (÷ world) gives the one-process gradient of the mean.
      const g = [...got[0]!.grad, ...got[1]!.grad].map((v) => v / 2);
      expect(maxDiff(g, grad)).toBeLessThanOrEqual(1e-6);
      expect(Math.max(...grad.map(Math.abs))).toBeGreaterThan(1e-3); // the gradient is not trivially zero
    });
  });

  for (const victim of [1, 0])
    test(`a killed rank ${victim} makes the other fail with an error naming it, well within the timeout`, async () => {
      const rs = await runRanks(
        2,
        lib.indexUrl,
        `
        const pg = await lib.initProcessGroup({ timeoutMs: 30000, heartbeatMs: 200 });
        const x = lib.ones([4]);
        await pg.allReduce(x).wait();
        if (rank === ${victim}) process.kill(process.pid, 'SIGKILL');
        await new Promise((r) => setTimeout(r, 300));
        const t0 = Date.now();
        for (const mode of ['async', 'sync']) {
          try {
            const w = pg.allReduce(x);
            if (mode === 'async') await w.wait(); else w.waitSync();
            emit({ mode, unexpected: 'no error' });
          } catch (e) {
            emit({ mode, name: e.name, code: e.code, failedRanks: e.failedRanks, message: e.message, ms: Date.now() - t0 });
          }
        }
        process.exit(3);`,
      );
      const dead = rs[victim]!;
      const alive = rs[1 - victim]!;
      expect(dead.signal).toBe('SIGKILL');
      expect(alive.code).toBe(3);
      const [first, second] = emitted(alive) as { mode: string; name: string; code: string; failedRanks: number[]; message: string; ms: number }[];
      expect(first).toMatchObject({ mode: 'async', name: 'DistributedError', code: 'ERR_DIST_PEER', failedRanks: [victim] });
      expect(first!.message).toMatch(
        victim === 1
          ? /^rank 0: rank 1 stopped responding \(process exited, killed or hung\); allReduce\(sum\) float32 \[4\]: /
          : /^rank 1: rank 0 \(which hosts the rendezvous store\) is unreachable/,
      );
      expect(first!.ms).toBeLessThan(15_000); // half the group's 30 s timeout: the failure is detected, not waited out
      // The group stays failed: the next collective reports the same cause at once.
      expect(second).toMatchObject({ mode: 'sync', name: 'DistributedError', code: 'ERR_DIST_PEER', failedRanks: [victim] });
      expect(second!.message).toContain('the group failed earlier');
    });

  test('a rank that never joins the collective: the other times out with ERR_DIST_TIMEOUT (no rank blamed, its heartbeat lives)', async () => {
    const rs = await runRanks(
      2,
      lib.indexUrl,
      `
      const pg = await lib.initProcessGroup({ timeoutMs: 2000, heartbeatMs: 200 });
      if (rank === 1) { await new Promise((r) => setTimeout(r, 4000)); process.exit(0); }
      const t0 = Date.now();
      try { await pg.allReduce(lib.ones([2])).wait(); } catch (e) { emit({ code: e.code, failedRanks: e.failedRanks, message: e.message, ms: Date.now() - t0 }); }
      process.exit(0);`,
    );
    const [err] = emitted(rs[0]!) as { code: string; failedRanks: number[]; message: string; ms: number }[];
    expect(err).toMatchObject({ code: 'ERR_DIST_TIMEOUT', failedRanks: [] });
    expect(err!.message).toMatch(
      /^rank 0: no rank failed, but the collective did not complete within 2000 ms \(every rank must issue the same collectives in the same order\); allReduce\(sum\) float32 \[2\]: .*[Tt]imed out/,
    );
    expect(err!.ms).toBeGreaterThanOrEqual(1900);
    expect(err!.ms).toBeLessThan(20_000); // the timeout applied (rank 1 only exits after 4 s; the harness kills at 90 s)
  });
});
