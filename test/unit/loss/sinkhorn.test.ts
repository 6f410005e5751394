import { describe, expect, test } from 'vitest';

import {
  cat,
  DINOLoss,
  Generator,
  IBOTPatchLoss,
  LocalProcessGroup,
  randn,
  scope,
  sinkhornKnopp,
  sum,
  tensor,
  totalMaskedPatches,
  TorchRangeError,
  TorchTypeError,
} from '../../../src/index.js';
import { MirrorGroup } from './fake_group.js';
import { expectClose, expectError, expectNoLeakedTensors, useFixture } from './fixtures.js';

const { g } = useFixture('losses_io');
expectNoLeakedTensors();

describe('Sinkhorn-Knopp (RECIPE §5.1)', () => {
  test('DINO targets equal the official ones (dino.sinkhorn_probs)', () => {
    scope(() => {
      const q = sinkhornKnopp(g('dino.teacher_logits'), 0.07);
      expect(q.dtype).toBe('float32');
      expectClose(q, g('dino.sinkhorn_probs'), 'dino.sinkhorn_probs');
      expectClose(sum(q, 1), tensor(Array(12).fill(1)), 'row sums');
    });
  });

  test('iBOT targets with B_tot = all-reduced masked count equal the official ones (ibot.sinkhorn_probs)', () => {
    const loss = new IBOTPatchLoss(32);
    scope(() => {
      const q = loss.sinkhornKnoppTeacher(g('ibot.teacher_logits'), 0.07, tensor([20], { dtype: 'int64' }));
      expectClose(q, g('ibot.sinkhorn_probs'), 'ibot.sinkhorn_probs');
    });
    loss.dispose();
  });

  test('each prototype gets equal mass when the iterations converge', () => {
    scope(() => {
      const z = randn([64, 8], { generator: new Generator(1) });
      const q = sinkhornKnopp(z, 1, { nIterations: 50 });
      expectClose(sum(q, 0), tensor(Array(8).fill(64 / 8)), 'column mass', 1e-4);
    });
  });

  test('a bfloat16 input is computed in float32', () => {
    scope(() => {
      const z = g('dino.teacher_logits').to('bfloat16');
      const q = sinkhornKnopp(z, 0.07);
      expect(q.dtype).toBe('float32');
      expect(q.toArray()).toEqual(sinkhornKnopp(z.float(), 0.07).toArray());
    });
  });

  test('logits around 1e4 give finite targets (per-prototype max shift)', () => {
    scope(() => {
      const z = randn([16, 32], { generator: new Generator(2) })
        .mul(3)
        .add(1e4);
      const q = sinkhornKnopp(z, 0.07);
      expect(q.toArray().every(Number.isFinite)).toBe(true);
      expectClose(sum(q, 1), tensor(Array(16).fill(1)), 'row sums');
      // shifting every logit by a constant changes nothing
      expectClose(q, sinkhornKnopp(z.sub(1e4), 0.07), 'shift invariance', 1e-3);
    });
  });

  test('sums go through the process group: a mirrored 2-rank world equals one rank with both copies', () => {
    scope(() => {
      const z = g('dino.teacher_logits');
      const q = sinkhornKnopp(z, 0.07, { group: new MirrorGroup(2) });
      const both = sinkhornKnopp(cat([z, z]), 0.07).narrow(0, 0, 12);
      expectClose(q, both, 'mirrored world');
      expect(totalMaskedPatches(7, new MirrorGroup(3)).item()).toBe(21);
    });
  });

  test('no autograd history and no leaks', () => {
    scope(() => {
      const z = g('dino.teacher_logits').clone().requiresGrad_();
      expect(sinkhornKnopp(z, 0.07).requiresGrad).toBe(false);
    });
  });

  test('softmax centering: centre after one EMA update and centred targets of the next batch match', () => {
    const loss = new DINOLoss(32);
    expect(loss.center.toArray()).toEqual(Array(32).fill(0));
    loss.updateCenter(g('dino.teacher_logits'));
    expect(loss.center.toArray()).toEqual(Array(32).fill(0)); // applied lazily, as in the official code
    const probs = loss.softmaxCenterTeacher(g('dino.center_batch2_logits'), 0.07);
    expectClose(loss.center, g('dino.center_after_update'), 'dino.center_after_update');
    expectClose(probs, g('dino.softmax_centered_probs'), 'dino.softmax_centered_probs');
    expect([...loss.stateDict().keys()]).toEqual(['center']);
    probs.dispose();
    loss.dispose();
  });

  test('iBOT centring averages over patches, then images', () => {
    const loss = new IBOTPatchLoss(4);
    scope(() => {
      const t = tensor([
        [
          [1, 2, 3, 4],
          [3, 2, 1, 0],
        ],
        [
          [0, 0, 0, 8],
          [0, 0, 0, 0],
        ],
      ]); // mean over patches: [2,2,2,2], [0,0,0,4] → over images [1,1,1,3]
      loss.updateCenter(t);
      loss.applyCenterUpdate();
      expect(loss.center.shape).toEqual([1, 1, 4]);
      expectClose(loss.center, tensor([[[0.1, 0.1, 0.1, 0.3]]]), 'ibot centre');
      expect(loss.softmaxCenterTeacher(t.narrow(0, 0, 1).view([2, 4]), 1).shape).toEqual([2, 4]);
    });
    loss.dispose();
  });

  test('argument errors name the op, the argument, and what was received', () => {
    scope(() => {
      expectError(
        () => sinkhornKnopp(tensor([1, 2, 3]), 0.07),
        TorchRangeError,
        'sinkhornKnopp: expected "teacherLogits" to be a floating Tensor [samples, prototypes], received float32 Tensor [3]',
      );
      expectError(
        () => sinkhornKnopp(tensor([[1, 2]], { dtype: 'int64' }), 0.07),
        TorchTypeError,
        'sinkhornKnopp: expected "teacherLogits" to be a floating Tensor [samples, prototypes], received int64 Tensor [1, 2]',
      );
      expectError(
        () => sinkhornKnopp(tensor([[1, 2]]), 0),
        TorchRangeError,
        'sinkhornKnopp: expected "teacherTemp" to be a positive finite number, received number 0',
      );
      expectError(() => new DINOLoss(0), TorchRangeError, 'DINOLoss: expected "outDim" to be a positive integer, received number 0');
      const ibot = new IBOTPatchLoss(4);
      expectError(
        () => ibot.softmaxCenterTeacher(tensor([[1, 2, 3]]), 0.07),
        TorchRangeError,
        'IBOTPatchLoss.softmaxCenterTeacher: expected "teacherPatchTokens" to be a floating Tensor [..., 4], received float32 Tensor [1, 3]',
      );
      ibot.dispose();
      expectError(
        () => sinkhornKnopp(tensor([[1, 2]]), 0.1, { nIterations: 0 }),
        TorchRangeError,
        'sinkhornKnopp: expected "nIterations" to be a positive integer, received number 0',
      );
    });
  });

  test('LocalProcessGroup: identity sum and max, aliasing gather', () => {
    const pg = new LocalProcessGroup();
    expect([pg.rank, pg.worldSize]).toEqual([0, 1]);
    scope(() => {
      const t = tensor([1, 2]);
      expect(pg.allReduceSum_(t)).toBe(t);
      const [a] = pg.allGather(t);
      expect(a!.toArray()).toEqual([1, 2]);
      a!.mul_(2);
      expect(t.toArray()).toEqual([2, 4]);
    });
  });
});
