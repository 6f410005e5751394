// Activation checkpointing (src/nn/checkpoint.ts, DinoVisionTransformer.activationCheckpointing): the blocks recomputed
// in backward give the gradients of the plain forward, bit for bit, with drop path and RoPE augmentation drawing the
// same random numbers; the RNG streams continue as without checkpointing; nothing is left behind. Also backwardAll
// (torch.autograd.backward over several roots).
import { describe, expect, test } from 'vitest';

import {
  backwardAll,
  DinoVisionTransformer,
  Generator,
  getRngState,
  manualSeed,
  memory,
  noGrad,
  ones,
  randn,
  scope,
  tensor,
  TorchRangeError,
  TorchTypeError,
} from '../../../src/index.js';
import { CheckpointedChain } from '../../../src/nn/checkpoint.js';
import { parseVitConfig } from '../../../src/config/vit.js';

describe('backwardAll', () => {
  test('several roots, each with its gradient, in one backward: the sum of the roots’ contributions', () => {
    const before = memory().liveTensors;
    scope(() => {
      const x = tensor([1, 2, 3], { dtype: 'float64' }).requiresGrad_(true);
      const a = x.mul(x); // d/dx = 2x
      const b = x.mul(3); // d/dx = 3
      backwardAll([a, b], [tensor([1, 1, 2], { dtype: 'float64' }), tensor([10, 0, 1], { dtype: 'float64' })]);
      expect(x.grad!.toArray()).toEqual([2 * 1 + 30, 4, 2 * 2 * 3 + 3]);
    });
    expect(memory().liveTensors).toBe(before);
  });

  test('bad calls are refused with what was wrong', () => {
    scope(() => {
      const x = ones([2]).requiresGrad_(true);
      const y = x.mul(2);
      expect(() => backwardAll([y], [])).toThrow(new TorchRangeError('backwardAll: 1 tensors but 0 gradients', 'ERR_INVALID_ARG'));
      expect(() => backwardAll([y], [ones([3])])).toThrow(/^backwardAll: gradients\[0\] \(.*\[3\].*\) does not match tensors\[0\] \(.*\[2\].*\)$/);
      expect(() => backwardAll([ones([2])], [ones([2])])).toThrow(/^backwardAll: tensors\[0\] does not require grad/);
      expect(() => backwardAll(y as never, [])).toThrow(TorchTypeError);
      expect(() => backwardAll([3 as never], [ones([2])])).toThrow('backwardAll: expected "tensors[0]" to be a Tensor, received number 3');
    });
  });
});

// A 3-block ViT with drop path and RoPE augmentation (the random parts of the training forward), two crop groups.
function vit(ckpt: boolean, generator: Generator): DinoVisionTransformer {
  const cfg = parseVitConfig({
    patch_size: 8,
    embed_dim: 32,
    depth: 3,
    num_heads: 2,
    n_storage_tokens: 1,
    drop_path_rate: 0.4,
    layerscale_init: 0.1,
    pos_embed_rope_shift_coords: 0.5,
    pos_embed_rope_rescale_coords: 2,
  });
  const m = new DinoVisionTransformer(cfg, { generator: new Generator(7) });
  m.blocks.forEach((b) => (b.generator = generator));
  m.ropeEmbed.generator = generator;
  m.activationCheckpointing = ckpt;
  return m.train();
}

function gradsOf(ckpt: boolean): { grads: Float32Array[]; loss: number; after: number[] } {
  manualSeed(3);
  const g = new Generator(11);
  const m = vit(ckpt, g);
  try {
    return scope(() => {
      const xs = [randn([4, 3, 16, 16], { generator: new Generator(1) }), randn([6, 3, 8, 8], { generator: new Generator(2) })];
      const feats = m.forwardFeaturesList(xs, [null, null]);
      const loss = feats
        .map((f, i) =>
          f.clsToken
            .pow(2)
            .sum()
            .mul(i + 1)
            .add(f.patchTokens.sin().sum()),
        )
        .reduce((a, b) => a.add(b));
      loss.backward();
      m.backwardCheckpointed();
      const grads = m.parameters().map((p) => (p.grad ? p.grad.toFloat32Array() : new Float32Array()));
      // the RNG streams continue where the plain forward leaves them
      const after = [...g.getState().toArray().slice(0, 8), ...getRngState().toArray().slice(0, 8)] as number[];
      return { grads, loss: loss.item(), after };
    });
  } finally {
    m.dispose();
  }
}

describe('activation checkpointing of the ViT blocks', () => {
  test('the same loss and gradients, bit for bit, with drop path 0.4 and RoPE shift/rescale; the RNG streams unchanged', () => {
    const before = memory().liveTensors;
    const plain = gradsOf(false);
    const ckpt = gradsOf(true);
    expect(ckpt.loss).toBe(plain.loss);
    expect(ckpt.grads.length).toBe(plain.grads.length);
    let withGrad = 0;
    plain.grads.forEach((g, i) => {
      expect(Array.from(ckpt.grads[i]!), `parameter ${i}`).toEqual(Array.from(g));
      if (g.length > 0 && g.some((v) => v !== 0)) withGrad++;
    });
    expect(withGrad).toBeGreaterThan(20); // every block's weights, the patch embedding, the tokens, the norm
    expect(ckpt.after).toEqual(plain.after);
    expect(memory().liveTensors).toBe(before);
  });

  test('the forward keeps each block input, not its activations; eval mode and noGrad run plainly', () => {
    const m = vit(true, new Generator(1));
    try {
      scope(() => {
        const x = randn([2, 3, 16, 16]);
        noGrad(() => m.forwardFeatures(x)); // no chain: nothing pending
        m.backwardCheckpointed(); // a no-op
        const f = m.forwardFeatures(x);
        f.clsToken.sum().backward();
        expect(m.blocks[0]!.attn.qkv.weight.grad).toBe(null); // the blocks' gradients wait for the recomputation
        expect(m.patchEmbed.proj.weight.grad).toBe(null);
        m.backwardCheckpointed();
        expect(m.blocks[0]!.attn.qkv.weight.grad).not.toBe(null);
        expect(m.patchEmbed.proj.weight.grad).not.toBe(null);
      });
    } finally {
      m.dispose();
    }
  });

  test('two forwards, one backward of both: both finish, with the gradients of the plain forwards', () => {
    const grad = (ckpt: boolean) => {
      const m = vit(ckpt, new Generator(1));
      try {
        return scope(() => {
          const x = randn([4, 3, 16, 16], { generator: new Generator(3) });
          const parts = [x.narrow(0, 0, 2), x.narrow(0, 2, 2)];
          const loss = parts.map((p) => m.forwardFeatures(p).clsToken.pow(2).sum()).reduce((a, b) => a.add(b));
          loss.backward();
          m.backwardCheckpointed();
          return m.blocks[0]!.attn.qkv.weight.grad!.toFloat32Array();
        });
      } finally {
        m.dispose();
      }
    };
    const plain = grad(false);
    const ckpt = grad(true);
    // The two forwards' contributions are summed in another order (the latest chain's first): float32 rounding.
    const scale = Math.max(...plain.map(Math.abs));
    expect(scale).toBeGreaterThan(0);
    const worst = Math.max(...ckpt.map((v, i) => Math.abs(v - plain[i]!)));
    expect(worst / scale).toBeLessThan(1e-5);
  });

  test('a forward that no backward reached is freed by backwardCheckpointed (not recomputed), or by dispose', () => {
    const before = memory().liveTensors;
    const m = vit(true, new Generator(1));
    const params = memory().liveTensors;
    scope(() => {
      m.forwardFeatures(randn([2, 3, 16, 16]));
      m.forwardFeatures(randn([2, 3, 16, 16]));
    });
    expect(memory().liveTensors).toBeGreaterThan(params); // two chains pending
    m.backwardCheckpointed();
    expect(memory().liveTensors).toBe(params);
    expect(m.blocks[0]!.attn.qkv.weight.grad).toBe(null);
    scope(() => void m.forwardFeatures(randn([2, 3, 16, 16])));
    m.dispose();
    expect(memory().liveTensors).toBe(before);
  });
});

describe('CheckpointedChain', () => {
  test('misuse is refused', () => {
    expect(() => new CheckpointedChain([])).toThrow('CheckpointedChain: expected "input" to be a non-empty array of Tensors');
    scope(() => {
      const x = ones([2]).requiresGrad_(true);
      const c = new CheckpointedChain([x.mul(1)]);
      expect(() => c.backward()).toThrow('CheckpointedChain.backward: the chain has no output yet');
      const live = memory().liveTensors;
      expect(() =>
        c.segment(() => {
          throw new Error('a failing block');
        }),
      ).toThrow('a failing block');
      expect(() => c.segment(() => 3 as never)).toThrow('CheckpointedChain.segment: "fn" must return a non-empty array of Tensors, returned number 3');
      expect(memory().liveTensors).toBe(live); // nothing kept by the failed segments
      c.segment(([a]) => [a!.mul(2)]);
      const [y] = c.output();
      expect(() => c.output()).toThrow('CheckpointedChain.output: already taken');
      expect(() => c.segment((a) => a)).toThrow('CheckpointedChain.segment: the chain already has its output');
      y!.sum().backward();
      c.backward();
      expect(x.grad!.toArray()).toEqual([2, 2]);
      expect(() => c.backward()).toThrow('CheckpointedChain.backward: the chain was disposed (its backward ran)');
    });
  });
});
