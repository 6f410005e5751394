import { describe, expect, test } from 'vitest';

import {
  Generator,
  IBOTPatchLoss,
  ibotPatchLoss,
  ibotPatchLossMasked,
  masksWeight,
  randn,
  scope,
  tensor,
  type Tensor,
  TorchRangeError,
  TorchTypeError,
  zeros,
} from '../../../src/index.js';
import { expectClose, expectError, expectNoLeakedTensors, useFixture } from './fixtures.js';

const { g } = useFixture('losses_io');
expectNoLeakedTensors();

describe('iBOT masked patch loss (RECIPE §5.3)', () => {
  test('masks [4, 12] with 20 masked patches: weights are 1/(masked patches of the image)', () => {
    scope(() => {
      const w = masksWeight(g('ibot.masks'));
      expect(w.shape).toEqual([20]);
      // per image: 5, 4, 6, 5 masked patches
      const expected = [...Array(5).fill(1 / 5), ...Array(4).fill(1 / 4), ...Array(6).fill(1 / 6), ...Array(5).fill(1 / 5)];
      expectClose(w, tensor(expected), 'masks_weight');
    });
  });

  test('loss and gradient with Sinkhorn-Knopp targets equal the official ones (ibot.loss, ibot.grad)', () => {
    const m = new IBOTPatchLoss(32);
    scope(() => {
      const targets = m.sinkhornKnoppTeacher(g('ibot.teacher_logits'), 0.07, 20);
      const s = g('ibot.student_logits').clone().requiresGrad_();
      const loss = m.forwardMasked(s, targets, g('ibot.masks'), { nMaskedPatches: 20 });
      loss.backward();
      expectClose(loss.reshape([1]), g('ibot.loss'), 'ibot.loss');
      expectClose(s.grad!, g('ibot.grad'), 'ibot.grad');
    });
    m.dispose();
  });

  test('explicit masks_weight and the unmasked form agree with the masked form', () => {
    scope(() => {
      const gen = new Generator(5);
      const masks = g('ibot.masks');
      const s = randn([20, 32], { generator: gen });
      const t = randn([20, 32], { generator: gen }).softmax(-1);
      const a = ibotPatchLossMasked(s, t, masks).item();
      expect(ibotPatchLossMasked(s, t, masks, { masksWeight: masksWeight(masks) }).item()).toBe(a);
      // scatter the masked rows into [4, 12, 32] tensors and use the official unmasked `forward`
      const idx = masks.reshape([-1]).nonzero().reshape([-1]);
      const full = (x: Tensor) => zeros([48, 32]).indexPut([idx], x).view([4, 12, 32]);
      expect(ibotPatchLoss(full(s), full(t), masks).item()).toBeCloseTo(a, 5);
    });
  });

  test('an image without masked patches adds 0 but counts in the denominator', () => {
    scope(() => {
      const masks = tensor([
        [true, true, false],
        [false, false, false],
      ]);
      const gen = new Generator(6);
      const s = randn([2, 8], { generator: gen });
      const t = randn([2, 8], { generator: gen }).softmax(-1);
      const both = ibotPatchLossMasked(s, t, masks).item();
      const onlyFirst = ibotPatchLossMasked(s, t, masks.narrow(0, 0, 1)).item();
      expect(both).toBeCloseTo(onlyFirst / 2, 6);
      expect(Number.isFinite(both)).toBe(true);
      expect(ibotPatchLossMasked(zeros([0, 8]), zeros([0, 8]), zeros([2, 3], { dtype: 'bool' })).item() === 0).toBe(true);
    });
  });

  test('logits around 1e4 stay finite', () => {
    scope(() => {
      const m = g('ibot.masks');
      const big = randn([20, 32], { generator: new Generator(7) }).add(1e4);
      const loss = new IBOTPatchLoss(32);
      const t = loss.sinkhornKnoppTeacher(big, 0.07, 20);
      expect(Number.isFinite(loss.forwardMasked(big, t, m).item())).toBe(true);
      loss.dispose();
    });
  });

  test('argument errors', () => {
    scope(() => {
      const m = g('ibot.masks');
      const s = randn([20, 32]);
      expectError(
        () => ibotPatchLossMasked(s, randn([19, 32]), m),
        TorchRangeError,
        'ibotPatchLossMasked: expected "teacherProbsMasked" to be a floating Tensor [20, 32] (the shape of "studentLogitsMasked"), received float32 Tensor [19, 32]',
      );
      expectError(
        () => ibotPatchLossMasked(s, s, m.float()),
        TorchTypeError,
        'ibotPatchLossMasked: expected "studentMasksFlat" to be a bool Tensor [images, patches], received float32 Tensor [4, 12]',
      );
      expectError(
        () => ibotPatchLossMasked(s.narrow(0, 0, 19), s.narrow(0, 0, 19), m),
        TorchRangeError,
        'ibotPatchLossMasked: "studentMasksFlat" [4, 12] has 20 masked patches, but the logits have 19 rows',
      );
      expectError(
        () => ibotPatchLossMasked(s, s, m, { nMaskedPatches: 21 }),
        TorchRangeError,
        'ibotPatchLossMasked: expected "nMaskedPatches" to be an integer in [0, 20], received 21',
      );
      expectError(
        () => ibotPatchLossMasked(s, s, m, { masksWeight: randn([19]) }),
        TorchRangeError,
        'ibotPatchLossMasked: expected "masksWeight" to be a floating Tensor [20] (one weight per masked patch), received float32 Tensor [19]',
      );
    });
  });
});
