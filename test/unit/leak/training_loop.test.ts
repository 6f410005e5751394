// Leak test (STYLE §7 "Leak tests"; the tfjs #5007/#8570 symptom): 1000 training-like iterations of a tiny
// attention model (forward, a DINO-like cross-entropy against an EMA teacher, backward, per-module clipping, AdamW,
// EMA) must keep the live-tensor count constant and RSS bounded.
//
// The loop yields to the event loop once per iteration, as a real training loop does (it awaits its data loader):
// Node runs N-API finalizers (the GC backstop of every tensor handle, even disposed ones) from the event loop, so a
// loop that never yields accumulates the small per-handle records until it does.
import { describe, expect, test } from 'vitest';

import {
  AdamW,
  clipGradNorm,
  emaUpdate,
  Generator,
  LayerNorm,
  Linear,
  memory,
  Module,
  noGrad,
  randn,
  scaledDotProductAttention,
  scope,
  type Tensor,
} from '../../../src/index.js';

const B = 4;
const N = 16;
const D = 32;
const H = 4;
const K = 24;

class TinyBlock extends Module {
  readonly norm1 = this.registerModule('norm1', new LayerNorm(D));
  readonly qkv = this.registerModule('qkv', new Linear(D, 3 * D));
  readonly proj = this.registerModule('proj', new Linear(D, D));
  readonly norm2 = this.registerModule('norm2', new LayerNorm(D));
  readonly fc1 = this.registerModule('fc1', new Linear(D, 2 * D));
  readonly fc2 = this.registerModule('fc2', new Linear(2 * D, D));

  forward(x: Tensor): Tensor {
    // [B, N, D] → [3, B, H, N, D/H]
    const qkv = this.qkv
      .forward(this.norm1.forward(x))
      .reshape([B, N, 3, H, D / H])
      .permute([2, 0, 3, 1, 4]);
    const [q, k, v] = qkv.unbind(0) as [Tensor, Tensor, Tensor];
    const attn = scaledDotProductAttention(q, k, v).transpose(1, 2).reshape([B, N, D]); // [B, N, D]
    x = x.add(this.proj.forward(attn));
    return x.add(this.fc2.forward(this.fc1.forward(this.norm2.forward(x)).gelu()));
  }
}

class TinyModel extends Module {
  readonly backbone = this.registerModule('backbone', new TinyBlock());
  readonly head = this.registerModule('head', new Linear(D, K));
  forward(x: Tensor): Tensor {
    return this.head.forward(this.backbone.forward(x).mean(1)); // [B, K]
  }
}

function trainStep(student: TinyModel, teacher: TinyModel, opt: AdamW, gen: Generator): void {
  scope('train_step', () => {
    const x = randn([B, N, D], { generator: gen });
    const targets = noGrad(() => teacher.forward(x).div(0.07).softmax(-1)); // [B, K]
    const loss = targets.mul(student.forward(x).div(0.1).logSoftmax(-1)).sum(-1).mean().neg();
    loss.backward();
    clipGradNorm(student.backbone.parameters(), 3.0);
    clipGradNorm(student.head.parameters(), 3.0);
    for (const g of opt.paramGroups) g.lr = 1e-3 * (g.lrMult as number);
    opt.step();
    opt.zeroGrad();
    emaUpdate(teacher, student, 0.996);
  });
}

describe('training loop', () => {
  test('1000 iterations keep liveTensors constant and RSS bounded', async () => {
    const baseline = memory().liveTensors;
    const student = new TinyModel();
    const teacher = new TinyModel();
    teacher.loadStateDict(student.stateDict());
    teacher.requiresGrad_(false).eval();
    const opt = new AdamW([
      { params: student.backbone.parameters(), lrMult: 0.5, weightDecay: 0.04 },
      { params: student.head.parameters(), lrMult: 1, weightDecay: 0 },
    ]);
    const gen = new Generator(0);

    let liveAt10 = -1;
    let rssAfterWarmup = 0;
    for (let it = 1; it <= 1000; it++) {
      trainStep(student, teacher, opt, gen);
      await new Promise((resolve) => setImmediate(resolve));
      if (it === 10) liveAt10 = memory().liveTensors;
      if (it === 100) rssAfterWarmup = process.memoryUsage().rss;
    }
    const liveAt1000 = memory().liveTensors;
    const rssGrowthMB = (process.memoryUsage().rss - rssAfterWarmup) / 2 ** 20;

    expect(liveAt1000).toBe(liveAt10);
    expect(rssGrowthMB).toBeLessThan(64);
    expect(opt.stepCount).toBe(1000);
    // The model actually trained (EMA moved the teacher).
    const drift = scope(() => student.head.weight.sub(teacher.head.weight).abs().max().item());
    expect(drift).toBeGreaterThan(0);

    opt.dispose();
    student.dispose();
    teacher.dispose();
    expect(memory().liveTensors).toBe(baseline);
  });
});
