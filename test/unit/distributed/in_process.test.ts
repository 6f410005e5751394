// Two ranks of a Gloo group inside one process: the collectives are awaited (never waitSync), so neither rank blocks
// the JS thread the other needs.
import { afterAll, describe, expect, test } from 'vitest';

import { type C10dProcessGroup, initProcessGroup, tensor, zeros } from '../../../src/index.js';
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
    expect(pgs.map((p) => [p.rank, p.worldSize, p.backend])).toEqual([[0, 2, 'gloo'], [1, 2, 'gloo']]);

    const xs = pgs.map((p) => tensor([1 + p.rank, 10 * (p.rank + 1), -p.rank]));
    await Promise.all(pgs.map((p, r) => p.allReduce(xs[r]!, 'sum').wait()));
    expect(xs.map((x) => x.toArray())).toEqual([[3, 30, -1], [3, 30, -1]]);

    const ys = pgs.map((p) => tensor([1 + 2 * p.rank, 4 - p.rank]));
    await Promise.all(pgs.map((p, r) => p.allReduce(ys[r]!, 'max').wait()));
    expect(ys.map((y) => y.toArray())).toEqual([[3, 4], [3, 4]]);

    const zs = pgs.map((p) => tensor([2 + p.rank, 5]));
    await Promise.all(pgs.map((p, r) => p.allReduce(zs[r]!, 'avg').wait()));
    expect(zs.map((z) => z.toArray())).toEqual([[2.5, 5], [2.5, 5]]);

    const outs = pgs.map(() => zeros([4, 2]));
    const ins = pgs.map((p) => tensor([[p.rank, 1], [p.rank + 10, 2]]));
    await Promise.all(pgs.map((p, r) => p.allGatherInto(outs[r]!, ins[r]!).wait()));
    for (const o of outs) expect(o.toArray()).toEqual([0, 1, 10, 2, 1, 1, 11, 2]);

    const rsIn = pgs.map((p) => tensor([[1, 2], [3, 4], [5, 6], [7, 8]]).mul(p.rank + 1));
    const rsOut = pgs.map(() => zeros([2, 2]));
    await Promise.all(pgs.map((p, r) => p.reduceScatter(rsOut[r]!, rsIn[r]!).wait()));
    expect(rsOut.map((o) => o.toArray())).toEqual([[3, 6, 9, 12], [15, 18, 21, 24]]);

    const b = pgs.map((p) => tensor([p.rank === 1 ? 42 : 0, 7 * p.rank]));
    await Promise.all(pgs.map((p, r) => p.broadcast(b[r]!, 1).wait()));
    expect(b.map((t) => t.toArray())).toEqual([[42, 7], [42, 7]]);

    await Promise.all(pgs.map((p) => p.barrier().wait()));
    for (const t of [...xs, ...ys, ...zs, ...outs, ...ins, ...rsIn, ...rsOut, ...b]) t.dispose();
  });
});
