import { describe, expect, test } from 'vitest';

import { DINOLoss, dinoClsTokenLoss, Generator, randn, scope, sinkhornKnopp, type Tensor, TorchRangeError, TorchTypeError } from '../../../src/index.js';
import { expectClose, expectError, expectNoLeakedTensors, useFixture } from './fixtures.js';

const { g } = useFixture('losses_io');
expectNoLeakedTensors();

/** Loss and gradient of the student logits, as fixtures would hold them. */
function lossAndGrad(student: Tensor, teacher: Tensor, ignoreDiagonal: boolean): { loss: Tensor; grad: Tensor } {
  return scope(() => {
    const s = student.clone().requiresGrad_();
    const loss = dinoClsTokenLoss(s, teacher, { ignoreDiagonal });
    loss.backward();
    return { loss: loss.detach(), grad: s.grad! };
  });
}

describe('DINO CLS-token loss (RECIPE §5.2)', () => {
  // Targets from our Sinkhorn-Knopp (checked against dino.sinkhorn_probs in sinkhorn.test.ts), loss and gradient
  // against the official ones.
  for (const ignoreDiagonal of [false, true]) {
    test(`10 student crops × 2 teacher crops, ignoreDiagonal=${ignoreDiagonal}: loss and gradient`, () => {
      scope(() => {
        const teacher = sinkhornKnopp(g('dino.teacher_logits'), 0.07).view([2, 6, 32]);
        const { loss, grad } = lossAndGrad(g('dino.student_logits'), teacher, ignoreDiagonal);
        expect(loss.shape).toEqual([]);
        expectClose(loss.reshape([1]), g(`dino.loss_ignore_diag_${Number(ignoreDiagonal)}`), `dino.loss_ignore_diag_${Number(ignoreDiagonal)}`);
        expectClose(grad, g(`dino.grad_ignore_diag_${Number(ignoreDiagonal)}`), `dino.grad_ignore_diag_${Number(ignoreDiagonal)}`);
      });
    });
  }

  test('ignoring the diagonal drops exactly the same-view pairs', () => {
    scope(() => {
      const gen = new Generator(3);
      const s = randn([2, 4, 8], { generator: gen });
      const t = randn([2, 4, 8], { generator: gen }).softmax(-1);
      const pair = (i: number, j: number) => dinoClsTokenLoss(s.narrow(0, i, 1), t.narrow(0, j, 1)).item();
      const expected = (pair(0, 1) + pair(1, 0)) / 2;
      expect(dinoClsTokenLoss(s, t, { ignoreDiagonal: true }).item()).toBeCloseTo(expected, 5);
      const all = (pair(0, 0) + pair(0, 1) + pair(1, 0) + pair(1, 1)) / 4;
      expect(dinoClsTokenLoss(s, t).item()).toBeCloseTo(all, 5);
    });
  });

  test('bfloat16 logits are cast to float32; logits around 1e4 stay finite', () => {
    scope(() => {
      const teacher = sinkhornKnopp(g('dino.teacher_logits'), 0.07).view([2, 6, 32]);
      const l = dinoClsTokenLoss(g('dino.student_logits').to('bfloat16'), teacher);
      expect(l.dtype).toBe('float32');
      const big = randn([2, 6, 32], { generator: new Generator(4) }).add(1e4);
      const tBig = sinkhornKnopp(big.reshape([12, 32]), 0.07).view([2, 6, 32]);
      const lBig = dinoClsTokenLoss(big, tBig, { ignoreDiagonal: true });
      expect(Number.isFinite(lBig.item())).toBe(true);
    });
  });

  test('the DINOLoss module wraps the same computation', () => {
    const m = new DINOLoss(32);
    scope(() => {
      const teacher = m.sinkhornKnoppTeacher(g('dino.teacher_logits'), 0.07).view([2, 6, 32]);
      const a = m.forward(g('dino.student_logits'), teacher, true).item();
      const b = dinoClsTokenLoss(g('dino.student_logits'), teacher, { ignoreDiagonal: true }).item();
      expect(a).toBe(b);
    });
    m.dispose();
  });

  test('shape errors name the loss, the argument, the expected and the received shapes', () => {
    scope(() => {
      const s = randn([10, 6, 32]);
      expectError(
        () => dinoClsTokenLoss(s, randn([2, 5, 32])),
        TorchRangeError,
        'dinoClsTokenLoss: expected "teacherProbs" to be a floating Tensor [crops, 6, 32] (batch and prototypes of "studentLogits" [10, 6, 32]), received float32 Tensor [2, 5, 32]',
      );
      expectError(
        () => dinoClsTokenLoss(randn([60, 32]), randn([2, 6, 32])),
        TorchRangeError,
        'dinoClsTokenLoss: expected "studentLogits" to be a floating Tensor [crops, batch, prototypes], received float32 Tensor [60, 32]',
      );
      expectError(
        () => dinoClsTokenLoss(s, 'probs' as unknown as Tensor),
        TorchTypeError,
        'dinoClsTokenLoss: expected "teacherProbs" to be a floating Tensor [crops, 6, 32] (batch and prototypes of "studentLogits" [10, 6, 32]), received string "probs"',
      );
    });
  });
});
