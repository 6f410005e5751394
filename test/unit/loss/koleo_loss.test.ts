import { describe, expect, test } from 'vitest';

import { Generator, koleoLoss, koleoLossDistributed, normalize, randn, scope, tensor, type Tensor, TorchRangeError } from '../../../src/index.js';
import { PeersGroup } from './fake_group.js';
import { expectClose, expectError, expectNoLeakedTensors, useFixture } from './fixtures.js';

const { g } = useFixture('losses_io');
expectNoLeakedTensors();

/** float64 KoLeo of local rows `x` [b, D] searching `pool` rows [G, D] (x sits at rows offset…offset+b), topk 1. */
function koleoRef(x: number[][], pool: number[][], offset: number): number {
  const nrm = (v: number[]) => {
    const n = Math.max(Math.hypot(...v), 1e-8);
    return v.map((a) => a / n);
  };
  const xs = x.map(nrm);
  const ps = pool.map(nrm);
  let loss = 0;
  xs.forEach((xi, i) => {
    let best = -1;
    let bestDot = -Infinity;
    ps.forEach((pj, j) => {
      const dot = j === offset + i ? -1 : xi.reduce((s, a, d) => s + a * pj[d]!, 0);
      if (dot > bestDot) [best, bestDot] = [j, dot];
    });
    const d = Math.hypot(...xi.map((a, k) => a - ps[best]![k]! + 1e-8));
    loss -= Math.log(d + 1e-8) / xs.length;
  });
  return loss;
}

const rows = (t: Tensor) => {
  const [n, d] = t.shape as [number, number];
  const a = t.toArray();
  return Array.from({ length: n }, (_, i) => a.slice(i * d, (i + 1) * d));
};

describe('KoLeo (RECIPE §5.4)', () => {
  test('loss and gradient of koleo.input [16, 24] match the fixture', () => {
    scope(() => {
      const x = g('koleo.input').clone().requiresGrad_();
      const loss = koleoLoss(x);
      loss.backward();
      expectClose(loss.reshape([1]), g('koleo.loss'), 'koleo.loss');
      expectClose(x.grad!, g('koleo.grad'), 'koleo.grad');
    });
  });

  test('the distributed variant on one rank (topk 1) matches the same fixture', () => {
    scope(() => {
      const x = g('koleo.input').clone().requiresGrad_();
      const loss = koleoLossDistributed(x);
      loss.backward();
      expect(loss.dtype).toBe('float32');
      expectClose(loss.reshape([1]), g('koleo.loss'), 'koleo.loss (distributed)');
      expectClose(x.grad!, g('koleo.grad'), 'koleo.grad (distributed)');
    });
  });

  test("two samples: each is the other one's neighbour", () => {
    scope(() => {
      const x = tensor([
        [3, 4],
        [1, 0],
      ]);
      // normalised: (0.6, 0.8) and (1, 0); distance √(0.4² + 0.8²) for both
      const d = Math.hypot(-0.4 + 1e-8, 0.8 + 1e-8);
      expect(koleoLoss(x).item()).toBeCloseTo(-Math.log(d + 1e-8), 6);
    });
  });

  test('per-GPU KoLeo keeps a bfloat16 input in bfloat16', () => {
    scope(() => {
      const l = koleoLoss(g('koleo.input').to('bfloat16'));
      expect(l.dtype).toBe('bfloat16');
      expect(Math.abs(l.float().item() - g('koleo.loss').item())).toBeLessThan(0.05);
    });
  });

  test('distributed: neighbours are searched among the gathered group, excluding only the sample itself', () => {
    scope(() => {
      const gen = new Generator(8);
      const other = normalize(randn([4, 6], { generator: gen }));
      const x = randn([4, 6], { generator: gen });
      // rank 1 of 2, group = whole world (8 samples): this rank's rows sit at 4…7
      const world = koleoLossDistributed(x, { group: new PeersGroup(1, [other]) }).item();
      expect(world).toBeCloseTo(koleoRef(rows(x), [...rows(other), ...rows(x)], 4), 5);
      // group size 4 = this rank alone: the per-GPU loss
      const alone = koleoLossDistributed(x, { group: new PeersGroup(1, [other]), lossGroupSize: 4 }).item();
      expect(alone).toBeCloseTo(koleoLoss(x).item(), 6);
      // topk 2 averages the two nearest distances
      const k2 = koleoLossDistributed(x, { group: new PeersGroup(1, [other]), topk: 2 });
      expect(Number.isFinite(k2.item())).toBe(true);
    });
  });

  test('gradients of the distributed variant reach the gathered copy', () => {
    scope(() => {
      const x = g('koleo.input').clone().requiresGrad_();
      koleoLossDistributed(x, { group: new PeersGroup(0, [normalize(g('koleo.input'))]) }).backward();
      expect(x.grad!.abs().sum().item()).toBeGreaterThan(0);
    });
  });

  test('argument errors', () => {
    scope(() => {
      expectError(
        () => koleoLoss(tensor([[1, 2, 3]])),
        TorchRangeError,
        'koleoLoss: expected "x" to have at least 2 samples (rows), received float32 Tensor [1, 3]',
      );
      expectError(
        () => koleoLoss(tensor([1, 2, 3])),
        TorchRangeError,
        'koleoLoss: expected "x" to be a floating Tensor [samples, features], received float32 Tensor [3]',
      );
      expectError(
        () => koleoLossDistributed(randn([4, 3]), { group: new PeersGroup(0, [randn([4, 3])]), lossGroupSize: 6 }),
        TorchRangeError,
        'koleoLossDistributed: expected "lossGroupSize" to be a multiple of the local batch (4) that divides the world batch (8), received 6',
      );
      expectError(
        () => koleoLossDistributed(randn([4, 3]), { topk: 4 }),
        TorchRangeError,
        'koleoLossDistributed: expected "topk" to be at most lossGroupSize − 1 (3), received 4',
      );
    });
  });
});
