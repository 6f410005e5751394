// The fused inference kernels (native/src/ops/fused.cc) against the op-by-op composition they replace, and the
// rule that picks them (grad mode off, float32 on the CPU).
import { describe, expect, test } from 'vitest';
import {
  enableGrad,
  gelu,
  Generator,
  getNumThreads,
  linear,
  memory,
  noGrad,
  randn,
  RopePositionEmbedding,
  scope,
  SelfAttention,
  SelfAttentionBlock,
  setNumThreads,
  tensor,
} from '../../../src/index.js';
import { attentionQkv, fusable, fusedLinear, linearGelu, residualScale } from '../../../src/layers/fused.js';
import { expectClose } from '../models/helpers.js';

describe('fusable', () => {
  test('only without autograd, for float32 CPU tensors', () => {
    scope(() => {
      const x = randn([2, 3]);
      expect(fusable(x)).toBe(false); // grad mode is on by default
      expect(noGrad(() => fusable(x))).toBe(true);
      expect(noGrad(() => enableGrad(() => fusable(x)))).toBe(false);
      expect(noGrad(() => fusable(x.to('float64')))).toBe(false);
      expect(noGrad(() => fusable(x.to('bfloat16')))).toBe(false);
    });
  });
});

describe('attentionQkv', () => {
  // N = 2 prefix + 12 patches and N = 3 + 20: softmax rows shorter and longer than one 8-wide vector, with a tail.
  test.each([
    [2, 3, 4],
    [3, 4, 5],
  ])('equals the composition (RoPE on the last P tokens, prefix untouched), prefix %i, grid %i×%i', (prefix, H, W) => {
    const before = memory().liveTensors;
    const g = new Generator(prefix);
    const attn = new SelfAttention(64, 4, { qkvBias: true });
    const rope = new RopePositionEmbedding(64, { numHeads: 4, dtype: 'float32' }).eval();
    scope(() => {
      const tables = rope.forward({ H, W });
      const qkv = randn([3, prefix + H * W, 192], { generator: g }).mul(2);
      const want = attn.computeAttention(qkv, tables); // grad mode on: the composition
      const got = noGrad(() => attentionQkv(qkv, 4, tables, 1 / Math.sqrt(16)));
      expect(got.shape).toEqual([3, prefix + H * W, 64]);
      expectClose(got, want, 'attention with RoPE', 1e-5);
      expectClose(noGrad(() => attn.computeAttention(qkv, tables)), want, 'computeAttention (fused)', 1e-5);
      expectClose(noGrad(() => attn.computeAttention(qkv, null)), attn.computeAttention(qkv, null), 'attention without RoPE', 1e-5);
    });
    attn.dispose();
    rope.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('splits (image, head) pairs over the intra-op threads with the same result', () => {
    const prev = getNumThreads();
    const g = new Generator(11);
    const rope = new RopePositionEmbedding(64, { numHeads: 4, dtype: 'float32' }).eval();
    scope(() => {
      const tables = rope.forward({ H: 4, W: 4 });
      const qkv = randn([5, 3 + 16, 192], { generator: g }); // 20 (image, head) pairs: uneven over 3 threads
      const one = attentionQkv(qkv, 4, tables, 0.25);
      try {
        for (const n of [2, 3]) {
          setNumThreads(n);
          expect(attentionQkv(qkv, 4, tables, 0.25).toArray()).toEqual(one.toArray());
        }
      } finally {
        setNumThreads(prev);
      }
    });
    rope.dispose();
  });

  test('a uniform softmax averages v; a dominant score selects one row', () => {
    scope(() => {
      // B = 1, N = 2, one head, d = 2: q = k = 0 → uniform weights → mean of the v rows.
      const qkv = tensor([[[0, 0, 0, 0, 1, 2], [0, 0, 0, 0, 3, 4]]]);
      const out = attentionQkv(qkv, 1, null, 1);
      expect(out.shape).toEqual([1, 2, 2]);
      expect(out.toArray()).toEqual([2, 3, 2, 3]);
      // q·k of token 0 with itself is 100 ≫ 0 → token 0 attends to itself only.
      const sel = tensor([[[10, 0, 10, 0, 1, 2], [0, 0, 0, 0, 3, 4]]]);
      expect(attentionQkv(sel, 1, null, 1).toArray()).toEqual([1, 2, 2, 3]);
    });
  });

  test('rejects inputs it does not handle, with the reason', () => {
    scope(() => {
      expect(() => attentionQkv(randn([2, 5, 10]), 4, null, 1)).toThrow(
        'attentionQkv: expected "qkv" [B, N, 3·D] with D a multiple of numHeads (4), received float32 [2, 5, 10]',
      );
      expect(() => attentionQkv(randn([2, 5, 12], { dtype: 'float64' }), 2, null, 1)).toThrow(
        'attentionQkv: expected a float32 CPU "qkv", received float64 [2, 5, 12]',
      );
      const sin = randn([6, 2]);
      expect(() => attentionQkv(randn([2, 5, 12]), 2, { sin, cos: sin }, 1)).toThrow(
        'attentionQkv: expected float32 RoPE tables [P, 2] with P <= 5, received sin float32 [6, 2] and cos float32 [6, 2]',
      );
    });
  });
});

describe('fusedLinear, linearGelu and residualScale', () => {
  test('equal linear(x), gelu(linear(x)) and x + γ ⊙ y', () => {
    const before = memory().liveTensors;
    const g = new Generator(7);
    scope(() => {
      const x = randn([2, 5, 8], { generator: g });
      const w = randn([12, 8], { generator: g });
      const b = randn([12], { generator: g });
      expectClose(fusedLinear(x, w, b), linear(x, w, b), 'fusedLinear', 1e-6);
      expectClose(fusedLinear(x, w, null), linear(x, w), 'fusedLinear without bias', 1e-6);
      expect(fusedLinear(randn([8]), w, b).shape).toEqual([12]);
      expect(() => fusedLinear(x, randn([12, 7]), b)).toThrow('fusedLinear: input float32 [2, 5, 8] does not match weight float32 [12, 7]');
      expectClose(linearGelu(x, w, b), gelu(linear(x, w, b)), 'linearGelu', 1e-6);
      expectClose(linearGelu(x, w, null), gelu(linear(x, w)), 'linearGelu without bias', 1e-6);
      const y = randn([2, 5, 8], { generator: g });
      const gamma = randn([8], { generator: g });
      expectClose(residualScale(x, y, gamma), x.add(y.mul(gamma)), 'residualScale', 1e-6);
      expectClose(residualScale(x, y, null), x.add(y), 'residualScale without gamma', 0);
    });
    expect(memory().liveTensors).toBe(before);
  });

  test.each(['mlp', 'swiglu'] as const)('a %s block gives the same output with and without the fused kernels (eval, LayerScale, RoPE)', (ffnLayer) => {
    const before = memory().liveTensors;
    const blk = new SelfAttentionBlock(64, 4, { qkvBias: true, initValues: 0.5, maskKBias: true, ffnLayer }).eval();
    const rope = new RopePositionEmbedding(64, { numHeads: 4, dtype: 'float32' }).eval();
    scope(() => {
      const x = randn([2, 5 + 12, 64], { generator: new Generator(3) });
      const tables = rope.forward({ H: 3, W: 4 });
      const want = blk.forward(x, tables);
      expectClose(noGrad(() => blk.forward(x, tables)), want, 'block', 1e-5);
    });
    blk.dispose();
    rope.dispose();
    expect(memory().liveTensors).toBe(before);
  });
});
