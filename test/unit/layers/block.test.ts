// SelfAttentionBlock: pre-norm residuals, LayerScale, FFNs and batch-subset stochastic depth (RECIPE §1.4).
import { describe, expect, test } from 'vitest';
import {
  Generator,
  init,
  memory,
  Mlp,
  narrow,
  randn,
  RopePositionEmbedding,
  scope,
  SelfAttentionBlock,
  swigluHiddenFeatures,
  SwiGLUFFN,
  type Tensor,
} from '../../../src/index.js';
import { expectClose } from '../models/helpers.js';

describe('FFN layers', () => {
  test('Mlp = fc2(GELU_erf(fc1 x)); SwiGLU = w3(SiLU(w1 x) ⊙ w2 x) with the aligned width', () => {
    const g = new Generator(0);
    const mlp = new Mlp(8, 32);
    const sw = new SwiGLUFFN(8, 48, { alignTo: 8 });
    expect(sw.hiddenFeatures).toBe(32);
    expect(sw.w1.weight.shape).toEqual([32, 8]);
    expect(sw.w3.weight.shape).toEqual([8, 32]);
    expect([swigluHiddenFeatures(2304), swigluHiddenFeatures(6144), swigluHiddenFeatures(7680), swigluHiddenFeatures(12288, 64)]).toEqual([
      1536, 4096, 5120, 8192,
    ]);
    scope(() => {
      const x = randn([3, 8], { generator: g });
      const h = mlp.fc1.forward(x);
      const gelu = h.mul(h.div(Math.SQRT2).erf().add(1)).mul(0.5);
      expectClose(mlp.forward(x), mlp.fc2.forward(gelu), 'mlp', 1e-6);
      const a = sw.w1.forward(x);
      expectClose(sw.forward(x), sw.w3.forward(a.mul(a.sigmoid()).mul(sw.w2.forward(x))), 'swiglu', 1e-6);
    });
    mlp.dispose();
    sw.dispose();
  });
});

function makeBlock(dropPath: number, seed: number): SelfAttentionBlock {
  const g = new Generator(seed);
  const blk = new SelfAttentionBlock(16, 2, { qkvBias: true, maskKBias: true, initValues: 0.5, dropPath, normLayer: 'layernormbf16', generator: g });
  for (const [, t] of blk.namedParameters()) if (t.ndim === 2) init.normal_(t, { std: 0.2, generator: g });
  return blk;
}

describe('SelfAttentionBlock', () => {
  test('x + LS1(attn(norm1 x)) then + LS2(mlp(norm2 x)); no LayerScale keys without init value', () => {
    const blk = makeBlock(0, 1);
    scope(() => {
      const x = randn([2, 5, 16], { generator: new Generator(9) });
      const a = x.add(blk.ls1!.forward(blk.attn.forward(blk.norm1.forward(x))));
      const want = a.add(blk.ls2!.forward(blk.mlp.forward(blk.norm2.forward(a))));
      expectClose(blk.forward(x), want, 'block', 1e-6);
      expectClose(blk.train().forward(x), want, 'train mode without drop path', 1e-6);
    });
    blk.dispose();
    const noLs = new SelfAttentionBlock(16, 2, { initValues: null });
    expect([...noLs.stateDict().keys()].filter((k) => k.includes('ls'))).toEqual([]);
    noLs.dispose();
  });

  test('drop path: b_keep = max(⌊b(1−p)⌋, 1) images get the branch scaled by b/b_keep, the others none', () => {
    const before = memory().liveTensors;
    for (const [b, p, keep] of [
      [4, 0.3, 2],
      [8, 0.4, 4],
      [1, 0.3, 1],
      [5, 0.9, 1],
    ] as const) {
      const blk = makeBlock(p, 2);
      init.zeros_(blk.ls2!.gamma); // isolate the attention branch
      scope(() => {
        const x = randn([b, 5, 16], { generator: new Generator(3) });
        const branch = blk.ls1!.forward(blk.attn.forward(blk.norm1.forward(x))); // per image, independent of the batch
        const out = blk.train().forward(x);
        let updated = 0;
        for (let i = 0; i < b; i++) {
          const oi = narrow(out, 0, i, 1);
          const xi = narrow(x, 0, i, 1);
          if (oi.sub(xi).abs().max().item() === 0) continue;
          updated++;
          expectClose(oi, xi.add(narrow(branch, 0, i, 1).mul(b / keep)), `image ${i}`, 1e-5);
        }
        expect(updated).toBe(keep);
      });
      blk.dispose();
    }
    expect(memory().liveTensors).toBe(before);
  });

  test('list forward: per-group subsets and RoPE tables; eval equals separate calls', () => {
    const blk = makeBlock(0.5, 4);
    const rope = new RopePositionEmbedding(16, { numHeads: 2, dtype: 'float32' }).eval();
    scope(() => {
      const g = new Generator(5);
      const xg = randn([4, 1 + 4, 16], { generator: g }); // 1 prefix + 2×2 patches
      const xl = randn([6, 1 + 1, 16], { generator: g }); // 1 prefix + 1×1 patch
      const rg = rope.forward({ H: 2, W: 2 });
      const rl = rope.forward({ H: 1, W: 1 });
      blk.eval();
      const [og, ol] = blk.forwardList([xg, xl], [rg, rl]) as [Tensor, Tensor];
      expectClose(og, blk.forward(xg, rg), 'global group', 1e-6);
      expectClose(ol, blk.forward(xl, rl), 'local group', 1e-6);
      blk.train();
      init.zeros_(blk.ls2!.gamma);
      const [tg, tl] = blk.forwardList([xg, xl], [rg, rl]) as [Tensor, Tensor];
      const changed = (o: Tensor, x: Tensor) => o.sub(x).abs().amax([1, 2]).gt(0).sum().item();
      expect([changed(tg, xg), changed(tl, xl)]).toEqual([2, 3]);
    });
    blk.dispose();
    rope.dispose();
  });
});
