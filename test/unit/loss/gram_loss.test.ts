import { describe, expect, test } from 'vitest';

import { gramLoss, type GramLossOptions, randn, scope, TorchRangeError } from '../../../src/index.js';
import { expectClose, expectError, expectNoLeakedTensors, useFixture } from './fixtures.js';

const { g } = useFixture('losses_io');
expectNoLeakedTensors();

const VARIANTS: [string, GramLossOptions][] = [
  ['batch_level', { imgLevel: false }],
  ['img_level', { imgLevel: true }],
  ['img_level_remove_neg', { imgLevel: true, removeNeg: true }],
  ['batch_level_remove_teacher_neg', { imgLevel: false, removeOnlyTeacherNeg: true }],
];

describe('Gram anchoring loss (RECIPE §5.5)', () => {
  for (const [name, o] of VARIANTS)
    test(`${name}: loss and student gradient match the fixture`, () => {
      scope(() => {
        const s = g('gram.student').clone().requiresGrad_();
        const t = g('gram.teacher').clone().requiresGrad_();
        const loss = gramLoss(s, t, o);
        loss.backward();
        expectClose(loss.reshape([1]), g(`gram.${name}.loss`), `gram.${name}.loss`);
        expectClose(s.grad!, g(`gram.${name}.grad`), `gram.${name}.grad`);
        expect(t.grad).toBeNull(); // no gradient into the gram teacher
      });
    });

  test('QUIRK: removeOnlyTeacherNeg leaves the student Gram matrix unchanged', () => {
    scope(() => {
      const s = g('gram.student');
      const t = g('gram.teacher');
      const quirk = gramLoss(s, t, { imgLevel: true, removeOnlyTeacherNeg: true }).item();
      // equal to clamping only the teacher; different from the intended "zero where both are negative"
      const gs = s
        .float()
        .div(s.norm(2, -1, true))
        .matmul(s.div(s.norm(2, -1, true)).transpose(-1, -2));
      const gt = t
        .div(t.norm(2, -1, true))
        .matmul(t.div(t.norm(2, -1, true)).transpose(-1, -2))
        .clamp(0);
      expect(quirk).toBeCloseTo(gs.sub(gt).square().mean().item(), 6);
    });
  });

  test('bfloat16 features are computed in float32', () => {
    scope(() => {
      const l = gramLoss(g('gram.student').to('bfloat16'), g('gram.teacher').to('bfloat16'), { imgLevel: true });
      expect(l.dtype).toBe('float32');
    });
  });

  test('argument errors', () => {
    scope(() => {
      expectError(
        () => gramLoss(randn([3, 12, 16]), randn([3, 12, 8]), { imgLevel: true }),
        TorchRangeError,
        'gramLoss: expected "teacherFeats" to be a floating Tensor [3, 12, 16] (the shape of "studentFeats" [3, 12, 16]), received float32 Tensor [3, 12, 8]',
      );
      expectError(
        () => gramLoss(randn([36, 16]), randn([36, 16]), { imgLevel: true }),
        TorchRangeError,
        'gramLoss: expected "studentFeats" to be a floating Tensor [images, patches, features], received float32 Tensor [36, 16]',
      );
      expectError(
        () => gramLoss(randn([2, 3, 4]), randn([2, 3, 4]), { removeNeg: true, removeOnlyTeacherNeg: true }),
        TorchRangeError,
        'gramLoss: "removeNeg" and "removeOnlyTeacherNeg" are exclusive; set at most one',
      );
    });
  });
});
