// Fused-qkv attention, masked key bias and RoPE on patch tokens only (RECIPE §1.3, §1.4).
import { describe, expect, test } from 'vitest';
import {
  cat,
  Generator,
  LinearKMaskedBias,
  memory,
  narrow,
  randn,
  RopePositionEmbedding,
  ropeApply,
  ropeRotateHalf,
  scope,
  SelfAttention,
  softmax,
  tensor,
  zeros,
} from '../../../src/index.js';
import { expectClose } from '../models/helpers.js';

describe('LinearKMaskedBias', () => {
  test('bias_mask is [1…1, 0…0, 1…1] and the key bias never reaches the output, nor gets a gradient', () => {
    const before = memory().liveTensors;
    const l = new LinearKMaskedBias(4, 12, { bias: true });
    expect(l.stateDict().get('bias_mask')!.toArray()).toEqual([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]);
    scope(() => {
      l.bias!.detach().copy_(tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]));
      const y = l.forward(zeros([1, 4]));
      expect(y.toArray()).toEqual([1, 2, 3, 4, 0, 0, 0, 0, 9, 10, 11, 12]);
      y.sum().backward();
      expect(l.bias!.grad!.toArray()).toEqual([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]);
    });
    l.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('without bias there is no bias_mask', () => {
    const l = new LinearKMaskedBias(4, 12, { bias: false });
    expect([...l.stateDict().keys()]).toEqual(['weight']);
    l.dispose();
  });
});

describe('RoPE application', () => {
  test('rot([x1, x2]) = [−x2, x1]; x·cos + rot(x)·sin', () => {
    scope(() => {
      expect(ropeRotateHalf(tensor([1, 2, 3, 4])).toArray()).toEqual([-3, -4, 1, 2]);
      expect(ropeApply(tensor([1, 2, 3, 4]), tensor([1, 1, 1, 1]), tensor([0, 0, 0, 0])).toArray()).toEqual([-3, -4, 1, 2]);
    });
  });

  test('only the last P tokens of q and k are rotated; the prefix tokens are untouched', () => {
    const g = new Generator(0);
    const attn = new SelfAttention(32, 2, { qkvBias: true });
    const rope = new RopePositionEmbedding(32, { numHeads: 2, dtype: 'float32' }).eval();
    scope(() => {
      const tables = rope.forward({ H: 2, W: 3 });
      const q = randn([2, 2, 8, 16], { generator: g }); // 2 prefix + 6 patches
      const k = randn([2, 2, 8, 16], { generator: g });
      const [qr, kr] = attn.applyRope(q, k, tables);
      expectClose(narrow(qr, 2, 0, 2), narrow(q, 2, 0, 2), 'q prefix', 0);
      expectClose(narrow(kr, 2, 0, 2), narrow(k, 2, 0, 2), 'k prefix', 0);
      expectClose(narrow(qr, 2, 2, 6), ropeApply(narrow(q, 2, 2, 6), tables.sin, tables.cos), 'q patches', 1e-6);
    });
    attn.dispose();
    rope.dispose();
  });

  test('bf16 tables: rotation in bf16, result cast back to fp32', () => {
    const g = new Generator(1);
    const attn = new SelfAttention(32, 2);
    const rope = new RopePositionEmbedding(32, { numHeads: 2, dtype: 'bfloat16' }).eval();
    scope(() => {
      const tables = rope.forward({ H: 2, W: 2 });
      const q = randn([1, 2, 5, 16], { generator: g });
      const [qr] = attn.applyRope(q, q, tables);
      expect(qr.dtype).toBe('float32');
      const want = ropeApply(narrow(q, 2, 1, 4).to('bfloat16'), tables.sin, tables.cos).to('float32');
      expectClose(narrow(qr, 2, 1, 4), want, 'bf16 rotation', 0);
      expectClose(narrow(qr, 2, 0, 1), narrow(q, 2, 0, 1).to('bfloat16').to('float32'), 'prefix round trip', 0);
    });
    attn.dispose();
    rope.dispose();
  });
});

test('attention = proj(softmax(q kᵀ/√d) v) per head with the fused qkv layout [3, h, d]', () => {
  const g = new Generator(2);
  const attn = new SelfAttention(16, 2, { qkvBias: true, maskKBias: true });
  scope(() => {
    attn.qkv.bias!.detach().copy_(randn([48], { generator: g }));
    const x = randn([3, 5, 16], { generator: g });
    const qkv = attn.qkv.forward(x).reshape([3, 5, 3, 2, 8]);
    const heads = [0, 1].map((h) => {
      const part = (i: number) => qkv.select(2, i).select(2, h); // [B, N, d]
      const w = softmax(part(0).matmul(part(1).transpose(1, 2)).div(Math.sqrt(8)), -1);
      return w.matmul(part(2));
    });
    const want = attn.proj.forward(cat(heads, -1));
    expectClose(attn.forward(x), want, 'attention', 1e-5);
    const [a, b] = attn.forwardList([x, narrow(x, 0, 0, 2)], [null, null]);
    expectClose(a!, want, 'list group 0', 1e-5);
    expectClose(b!, narrow(want, 0, 0, 2), 'list group 1', 1e-5);
  });
  attn.dispose();
});
