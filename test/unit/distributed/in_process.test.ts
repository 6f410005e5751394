// Two ranks of a Gloo group inside one process: the collectives are awaited (never waitSync), so neither rank blocks
// the JS thread the other needs.
import { afterAll, describe, expect, test } from 'vitest';

import { type C10dProcessGroup, DistributedError, initProcessGroup, LocalProcessGroup, ones, tensor, TorchRangeError, zeros } from '../../../src/index.js';
import { freePort } from './helpers.js';

describe('C10dProcessGroup, two ranks in one process', () => {
  const groups: C10dProcessGroup[] = [];
  afterAll(() => {
    for (const g of groups) g.destroy();
  });

  test('rendezvous and the collectives give exact values', async () => {
    const port = await freePort();
    const pgs = await Promise.all([0, 1].map((rank) => initProcessGroup({ rank, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 20_000 })));
    groups.push(...pgs);
    expect(pgs.map((p) => [p.rank, p.worldSize, p.backend])).toEqual([
      [0, 2, 'gloo'],
      [1, 2, 'gloo'],
    ]);

    const xs = pgs.map((p) => tensor([1 + p.rank, 10 * (p.rank + 1), -p.rank]));
    await Promise.all(pgs.map((p, r) => p.allReduce(xs[r]!, 'sum').wait()));
    expect(xs.map((x) => x.toArray())).toEqual([
      [3, 30, -1],
      [3, 30, -1],
    ]);

    const ys = pgs.map((p) => tensor([1 + 2 * p.rank, 4 - p.rank]));
    await Promise.all(pgs.map((p, r) => p.allReduce(ys[r]!, 'max').wait()));
    expect(ys.map((y) => y.toArray())).toEqual([
      [3, 4],
      [3, 4],
    ]);

    const zs = pgs.map((p) => tensor([2 + p.rank, 5]));
    await Promise.all(pgs.map((p, r) => p.allReduce(zs[r]!, 'avg').wait()));
    expect(zs.map((z) => z.toArray())).toEqual([
      [2.5, 5],
      [2.5, 5],
    ]);

    const outs = pgs.map(() => zeros([4, 2]));
    const ins = pgs.map((p) =>
      tensor([
        [p.rank, 1],
        [p.rank + 10, 2],
      ]),
    );
    await Promise.all(pgs.map((p, r) => p.allGatherInto(outs[r]!, ins[r]!).wait()));
    for (const o of outs) expect(o.toArray()).toEqual([0, 1, 10, 2, 1, 1, 11, 2]);

    const rsIn = pgs.map((p) =>
      tensor([
        [1, 2],
        [3, 4],
        [5, 6],
        [7, 8],
      ]).mul(p.rank + 1),
    );
    const rsOut = pgs.map(() => zeros([2, 2]));
    await Promise.all(pgs.map((p, r) => p.reduceScatter(rsOut[r]!, rsIn[r]!).wait()));
    expect(rsOut.map((o) => o.toArray())).toEqual([
      [3, 6, 9, 12],
      [15, 18, 21, 24],
    ]);

    const b = pgs.map((p) => tensor([p.rank === 1 ? 42 : 0, 7 * p.rank]));
    await Promise.all(pgs.map((p, r) => p.broadcast(b[r]!, 1).wait()));
    expect(b.map((t) => t.toArray())).toEqual([
      [42, 7],
      [42, 7],
    ]);

    await Promise.all(pgs.map((p) => p.barrier().wait()));
    for (const t of [...xs, ...ys, ...zs, ...outs, ...ins, ...rsIn, ...rsOut, ...b]) t.dispose();
  });

  test('no store to reach: ERR_DIST_STORE within the timeout, naming the address', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const e = await initProcessGroup({ rank: 1, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 1500 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DistributedError);
    expect((e as DistributedError).code).toBe('ERR_DIST_STORE');
    expect((e as Error).message).toMatch(
      new RegExp(`^distributed\\.init: rank 1 could not reach the rendezvous store at 127\\.0\\.0\\.1:${port} within 1500 ms \\(is rank 0 running`),
    );
    expect(Date.now() - t0).toBeLessThan(30_000); // gave up after the 1.5 s timeout instead of hanging
  });

  test('a rank missing from the rendezvous: ERR_DIST_TIMEOUT within the timeout', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const e = await initProcessGroup({ rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 1500 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DistributedError);
    expect((e as DistributedError).code).toBe('ERR_DIST_TIMEOUT');
    expect((e as Error).message).toMatch(/^distributed\.init: rank 0 of 2: the gloo rendezvous through 127\.0\.0\.1:\d+ did not complete within 1500 ms/);
    expect(Date.now() - t0).toBeLessThan(30_000); // gave up after the 1.5 s timeout instead of hanging
  });

  test('bad options are refused before any connection', async () => {
    await expect(initProcessGroup({ rank: 2, worldSize: 2, masterAddr: '127.0.0.1', masterPort: 1 })).rejects.toThrow(
      'initProcessGroup: rank (2) must be below worldSize (2)',
    );
    await expect(initProcessGroup({ rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: 1, backend: 'nccl' })).rejects.toMatchObject({
      code: 'ERR_DIST_BACKEND',
      message: 'initProcessGroup: the nccl backend is not in this build (available: gloo)',
    });
  });

  test('world size 1: a real group whose collectives are identities', async () => {
    const port = await freePort();
    const pg = await initProcessGroup({ rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: port });
    const x = tensor([1, 2]);
    pg.allReduce(x, 'avg').waitSync();
    const g = zeros([2]);
    await pg.allGatherInto(g, x).wait();
    expect([x.toArray(), g.toArray()]).toEqual([
      [1, 2],
      [1, 2],
    ]);
    pg.destroy();
    x.dispose();
    g.dispose();
  });

  test('bad collective arguments are refused before anything is sent', async () => {
    const port = await freePort();
    const pg = await initProcessGroup({ rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: port });
    const local = new LocalProcessGroup();
    const x = ones([2, 3]);
    const xt = x.t();
    const i = tensor([1, 2], { dtype: 'int64' });
    for (const g of [pg, local]) {
      expect(() => g.allReduce(i, 'avg')).toThrow(TorchRangeError);
      expect(() => g.allReduce(i, 'avg')).toThrow('allReduce: op "avg" needs a floating-point tensor, received int64');
      expect(() => g.allReduce(x, 'mean' as 'sum')).toThrow('allReduce: op must be one of "sum", "avg", "max", "min", "product", received "mean"');
      expect(() => g.allGatherInto(zeros([3, 3]), x)).toThrow(
        'allGatherInto: expected "output" to be "input"\'s dtype with 1 × its first dimension, received output float32 [3, 3] and input float32 [2, 3]',
      );
      expect(() => g.reduceScatter(zeros([2, 3]), zeros([2, 3], { dtype: 'float64' }))).toThrow(
        'reduceScatter: expected "input" to be "output"\'s dtype with 1 × its first dimension, received input float64 [2, 3] and output float32 [2, 3]',
      );
    }
    expect(() => pg.allReduce(xt)).toThrow('distAllReduce: "tensor" must be contiguous, received a strided float32 [3, 2]');
    expect(() => pg.broadcast(x, 1)).toThrow('distBroadcast: src must be in [0, 1), received 1');
    expect(() => local.broadcast(x, 1)).toThrow('broadcast: src must be 0 in a one-process group, received 1');
    pg.destroy();
    for (const t of [x, xt, i]) t.dispose();
  });
});
