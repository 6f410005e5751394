// CUDA graphs (cuda.Graph): a captured forward replays to the eager result for whatever is copied into its static
// input; capture refuses what would wait for the device and leaves the stream usable; reset and dispose free the pool.
// Runs only on a CUDA build with a visible GPU (scripts/gpu/check.sh).
import { describe, expect, test } from 'vitest';

import { addonInfo, cuda, DinoVisionTransformer, Generator, keep, memory, noGrad, randn, scope, type Tensor } from '../../src/index.js';
import { expectClose } from '../unit/models/helpers.js';

const onGpu = addonInfo.cudaCompiled && cuda.isAvailable();
const small = { embed_dim: 64, depth: 2, num_heads: 2, patch_size: 8, n_storage_tokens: 2 };

describe.runIf(onGpu)('cuda.Graph', () => {
  test('a captured ViT forward replays to the eager forward of each new input (float32 and bf16)', () => {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const model = new DinoVisionTransformer(small, { generator: new Generator(0) }).eval();
      model.to_({ device: 'cuda', dtype });
      const input = keep(
        randn([4, 3, 32, 32], { generator: new Generator(1) })
          .to('cuda')
          .to(dtype),
      );
      const g = new cuda.Graph();
      const out = noGrad(() => keep(g.capture(() => model.forwardFeatures(input).patchTokens, { warmup: 2 })));
      for (const seed of [2, 3]) {
        scope(() => {
          const x = randn([4, 3, 32, 32], { generator: new Generator(seed) })
            .to('cuda')
            .to(dtype);
          input.copy_(x);
          g.replay();
          const eager = noGrad(() => model.forwardFeatures(x).patchTokens);
          expectClose(out.float().cpu(), eager.float().cpu(), `replay ${dtype} seed ${seed}`, dtype === 'float32' ? 1e-5 : 1e-2);
        });
      }
      g.dispose();
      out.dispose();
      input.dispose();
      model.dispose();
    }
  });

  test('capture refuses a host read, abandons cleanly, and the stream and the graph work afterwards', () => {
    const g = new cuda.Graph();
    const x = keep(randn([8], { generator: new Generator(4) }).to('cuda'));
    expect(() => g.capture(() => x.sum().item())).toThrow(/capturing|capture/);
    expect(() => g.replay()).toThrow('cuda.Graph.replay: nothing captured: capture(fn) first');
    expect(scope(() => x.mul(2).sum().item())).toBeCloseTo(2 * scope(() => x.sum().item()), 4);
    const y = keep(g.capture(() => x.mul(3)));
    g.replay();
    expectClose(
      y.cpu(),
      scope(() => x.mul(3).cpu()),
      'after an abandoned capture',
      1e-6,
    );
    expect(() => g.capture(() => x.mul(3))).toThrow('cuda.Graph.capture: the graph already holds a capture; reset() it first');
    g.reset();
    const z = keep(g.capture(() => x.add(1)));
    g.replay();
    expectClose(
      z.cpu(),
      scope(() => x.add(1).cpu()),
      'after reset',
      1e-6,
    );
    g.dispose();
    expect(() => g.replay()).toThrow('cuda.Graph.replay: the graph has been disposed');
    for (const t of [x, y, z] as Tensor[]) t.dispose();
  });

  test('the pool goes back: captures in a loop keep CUDA memory flat', () => {
    const x = keep(randn([256, 256], { generator: new Generator(5) }).to('cuda'));
    const reserved: number[] = [];
    for (let i = 0; i < 6; i++) {
      const g = new cuda.Graph();
      const y = g.capture(() => x.matmul(x).relu());
      g.replay();
      cuda.synchronize();
      y.dispose();
      g.dispose();
      reserved.push(memory().cudaAllocated);
    }
    expect(reserved.at(-1)).toBe(reserved[1]);
    x.dispose();
  });
});
