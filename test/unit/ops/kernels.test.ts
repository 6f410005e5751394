// The kernel choice of linear(+GELU), attention and residualAdd (native/src/ops/fused.cc, src/ops/kernels.ts): which
// kernel runs for which tensors and grad mode, and that the fused CPU kernels equal the plain ATen composition (the
// reference, forced by withPlainKernels) and the official composition written out with the Tensor API.
import { describe, expect, test } from 'vitest';
import {
  autocast,
  enableGrad,
  eye,
  gelu,
  Generator,
  getNumThreads,
  linear,
  linspace,
  memory,
  noGrad,
  randn,
  RopePositionEmbedding,
  scaledDotProductAttention,
  scope,
  SelfAttention,
  SelfAttentionBlock,
  setNumThreads,
  tensor,
  unbind,
} from '../../../src/index.js';
import { attention, kernelChoice, residualAdd, setFusedKernels, withPlainKernels } from '../../../src/ops/kernels.js';
import { expectClose } from '../models/helpers.js';

describe('kernelChoice', () => {
  test('fused CPU for float32 CPU tensors (attention and residualAdd only without autograd), not while forbidden', () => {
    scope(() => {
      const x = randn([2, 3]);
      // linear: the SGEMM with or without autograd (an autograd function records it).
      expect(kernelChoice('linear', x)).toBe('fused-cpu');
      expect(noGrad(() => kernelChoice('linear', x))).toBe('fused-cpu');
      expect(kernelChoice('linear', x.to('float64'))).toBe('plain');
      expect(kernelChoice('linear', x.to('bfloat16'))).toBe('plain');
      expect(withPlainKernels(() => kernelChoice('linear', x))).toBe('plain');
      for (const op of ['attention', 'residualAdd'] as const) {
        expect(kernelChoice(op, x)).toBe('plain'); // grad mode is on by default
        expect(noGrad(() => kernelChoice(op, x))).toBe('fused-cpu');
        expect(noGrad(() => enableGrad(() => kernelChoice(op, x)))).toBe('plain');
        expect(noGrad(() => kernelChoice(op, x.to('float64')))).toBe('plain');
        expect(noGrad(() => kernelChoice(op, x.to('bfloat16')))).toBe('plain');
        expect(noGrad(() => withPlainKernels(() => kernelChoice(op, x)))).toBe('plain');
      }
      expect(noGrad(() => kernelChoice('linear', x, x.to('float64')))).toBe('plain');
      expect(setFusedKernels(true)).toBe(true);
      // CPU autocast: the ops cast to bfloat16, so the float32 kernels stand aside.
      for (const op of ['linear', 'attention', 'residualAdd'] as const)
        expect(noGrad(() => autocast(() => kernelChoice(op, x), { device: 'cpu' }))).toBe('plain');
      const w = randn([4, 3]);
      expect(noGrad(() => autocast(() => linear(x, w), { device: 'cpu' })).dtype).toBe('bfloat16');
    });
  });
});

/** The official SelfAttention.compute_attention written with the Tensor API (reshape, unbind, RoPE, SDPA). */
function officialAttention(
  attn: SelfAttention,
  qkv: ReturnType<typeof randn>,
  tables: { sin: ReturnType<typeof randn>; cos: ReturnType<typeof randn> } | null,
) {
  return scope(() => {
    const [b, n] = qkv.shape as [number, number, number];
    const [q0, k0, v] = unbind(qkv.reshape([b, n, 3, attn.numHeads, attn.headDim]), 2).map((t) => t.transpose(1, 2)) as [
      ReturnType<typeof randn>,
      ReturnType<typeof randn>,
      ReturnType<typeof randn>,
    ];
    const [q, k] = tables ? attn.applyRope(q0, k0, tables) : [q0, k0];
    return scaledDotProductAttention(q, k, v).transpose(1, 2).reshape([b, n, attn.dim]);
  });
}

describe('attention', () => {
  // N = 2 prefix + 12 patches and N = 3 + 20: softmax rows shorter and longer than one 8-wide vector, with a tail.
  test.each([
    [2, 3, 4],
    [3, 4, 5],
  ])('fused, plain and the official composition agree (RoPE on the last P tokens), prefix %i, grid %i×%i', (prefix, H, W) => {
    const before = memory().liveTensors;
    const g = new Generator(prefix);
    const attn = new SelfAttention(64, 4, { qkvBias: true });
    const rope = new RopePositionEmbedding(64, { numHeads: 4, dtype: 'float32' }).eval();
    scope(() => {
      const tables = rope.forward({ H, W });
      const qkv = randn([3, prefix + H * W, 192], { generator: g }).mul(2);
      const official = officialAttention(attn, qkv, tables);
      const plain = attention(qkv, 4, tables); // grad mode on: the plain composition
      expect(plain.shape).toEqual([3, prefix + H * W, 64]);
      // The plain kernel is the official composition op for op: identical values.
      expect(plain.toArray()).toEqual(official.toArray());
      expect(noGrad(() => withPlainKernels(() => attention(qkv, 4, tables))).toArray()).toEqual(official.toArray());
      expectClose(
        noGrad(() => attention(qkv, 4, tables)),
        official,
        'fused attention with RoPE',
        1e-5,
      );
      expectClose(
        noGrad(() => attn.computeAttention(qkv, tables)),
        official,
        'computeAttention (fused)',
        1e-5,
      );
      expectClose(
        noGrad(() => attention(qkv, 4, null)),
        officialAttention(attn, qkv, null),
        'fused attention without RoPE',
        1e-5,
      );
      // bfloat16 RoPE tables: not read by the fused kernel, so the plain composition runs (in bfloat16, cast back).
      const bf = { sin: tables.sin.to('bfloat16'), cos: tables.cos.to('bfloat16') };
      expect(noGrad(() => attention(qkv, 4, bf)).toArray()).toEqual(officialAttention(attn, qkv, bf).toArray());
    });
    attn.dispose();
    rope.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('records autograd history on the plain path: gradients equal those of the official composition', () => {
    scope(() => {
      const rope = new RopePositionEmbedding(32, { numHeads: 2, dtype: 'float32' }).eval();
      const attn = new SelfAttention(32, 2);
      const tables = rope.forward({ H: 2, W: 3 });
      const base = randn([2, 1 + 6, 96], { generator: new Generator(5), dtype: 'float64' });
      const [qkv1, qkv2] = [base.detach().requiresGrad_(), base.detach().requiresGrad_()];
      const t64 = { sin: tables.sin.to('float64'), cos: tables.cos.to('float64') };
      attention(qkv1, 2, t64).pow(2).sum().backward();
      officialAttention(attn, qkv2, t64).pow(2).sum().backward();
      expectClose(qkv1.grad!, qkv2.grad!, 'd(attention)/d(qkv)', 1e-12);
      attn.dispose();
      rope.dispose();
    });
  });

  test('splits (image, head) pairs over the intra-op threads with the same result', () => {
    const prev = getNumThreads();
    const g = new Generator(11);
    const rope = new RopePositionEmbedding(64, { numHeads: 4, dtype: 'float32' }).eval();
    scope(() => {
      const tables = rope.forward({ H: 4, W: 4 });
      const qkv = randn([5, 3 + 16, 192], { generator: g }); // 20 (image, head) pairs: uneven over 3 threads
      const one = noGrad(() => attention(qkv, 4, tables, { scale: 0.25 }));
      try {
        for (const n of [2, 3]) {
          setNumThreads(n);
          expect(noGrad(() => attention(qkv, 4, tables, { scale: 0.25 })).toArray()).toEqual(one.toArray());
        }
      } finally {
        setNumThreads(prev);
      }
    });
    rope.dispose();
  });

  test.each([true, false])('a uniform softmax averages v; a dominant score selects one row (fused: %s)', (fused) => {
    scope(() => {
      const run = (qkv: ReturnType<typeof tensor>) => (fused ? noGrad(() => attention(qkv, 1, null, { scale: 1 })) : attention(qkv, 1, null, { scale: 1 }));
      // B = 1, N = 2, one head, d = 2: q = k = 0 → uniform weights → mean of the v rows.
      const out = run(
        tensor([
          [
            [0, 0, 0, 0, 1, 2],
            [0, 0, 0, 0, 3, 4],
          ],
        ]),
      );
      expect(out.shape).toEqual([1, 2, 2]);
      expect(out.toArray()).toEqual([2, 3, 2, 3]);
      // q·k of token 0 with itself is 100 ≫ 0 → token 0 attends to itself only.
      expect(
        run(
          tensor([
            [
              [10, 0, 10, 0, 1, 2],
              [0, 0, 0, 0, 3, 4],
            ],
          ]),
        ).toArray(),
      ).toEqual([1, 2, 2, 3]);
    });
  });

  test('rejects inputs it does not handle, with the reason', () => {
    scope(() => {
      expect(() => attention(randn([2, 5, 10]), 4)).toThrow(
        'attention: expected "qkv" [B, N, 3·D] with D a multiple of numHeads (4), received float32 [2, 5, 10]',
      );
      expect(() => attention(randn([2, 5, 12]), 0)).toThrow('attention: numHeads must be >= 1, received 0');
      const sin = randn([6, 2]);
      expect(() => attention(randn([2, 5, 12]), 2, { sin, cos: sin })).toThrow('attention: RoPE tables cover 6 tokens but the sequence has only 5');
      expect(() => noGrad(() => attention(randn([2, 5, 12]), 2, { sin, cos: sin }))).toThrow(
        'attention: RoPE tables cover 6 tokens but the sequence has only 5',
      );
      expect(() => attention(randn([2, 5, 12]), 2, { sin: randn([4, 3]), cos: randn([4, 3]) })).toThrow(
        'attention: expected RoPE tables [P, 2], received sin float32 [4, 3] and cos float32 [4, 3]',
      );
    });
  });
});

describe('linear with GELU and residualAdd', () => {
  test('fused and plain equal linear(x), gelu(linear(x)) and x + γ ⊙ y', () => {
    const before = memory().liveTensors;
    const g = new Generator(7);
    scope(() => {
      const x = randn([2, 5, 8], { generator: g });
      const w = randn([12, 8], { generator: g });
      const b = randn([12], { generator: g });
      const ref = withPlainKernels(() => linear(x, w, b)); // at::linear
      expectClose(
        noGrad(() => linear(x, w, b)),
        ref,
        'fused linear',
        1e-6,
      );
      expectClose(
        noGrad(() => linear(x, w)),
        withPlainKernels(() => linear(x, w)),
        'fused linear without bias',
        1e-6,
      );
      // One row (M = 1): the bias-filled output must be a copy, never the bias itself.
      const bias0 = b.toArray();
      expectClose(
        noGrad(() => linear(randn([8], { generator: new Generator(1) }), w, b)),
        withPlainKernels(() => linear(randn([8], { generator: new Generator(1) }), w, b)),
        'one row',
        1e-6,
      );
      expect(b.toArray()).toEqual(bias0);
      expect(() => noGrad(() => linear(x, randn([12, 7]), b))).toThrow(
        'linear: input float32 [2, 5, 8] does not match weight float32 [12, 7]: last dim must be 7',
      );
      expect(() => linear(x, w, b, 'relu' as 'gelu')).toThrow('linear: activation must be "none" or "gelu", received "relu"');
      expect(withPlainKernels(() => linear(x, w, b, 'gelu')).toArray()).toEqual(gelu(ref).toArray());
      expectClose(linear(x, w, b, 'gelu'), gelu(linear(x, w, b)), 'linear + GELU in grad mode', 1e-6); // same SGEMM, GELU in place
      expectClose(
        noGrad(() => linear(x, w, b, 'gelu')),
        gelu(ref),
        'fused linear + GELU',
        1e-6,
      );
      expectClose(
        noGrad(() => linear(x, w, null, 'gelu')),
        gelu(withPlainKernels(() => linear(x, w))),
        'fused linear + GELU without bias',
        1e-6,
      );
      expect(noGrad(() => linear(x.to('float64'), w.to('float64'), b.to('float64'), 'gelu')).toArray()).toEqual(
        gelu(linear(x.to('float64'), w.to('float64'), b.to('float64'))).toArray(),
      );
      const y = randn([2, 5, 8], { generator: g });
      const gamma = randn([8], { generator: g });
      expect(residualAdd(x, y, gamma).toArray()).toEqual(x.add(y.mul(gamma)).toArray());
      expectClose(
        noGrad(() => residualAdd(x, y, gamma)),
        x.add(y.mul(gamma)),
        'fused residualAdd',
        1e-6,
      );
      expect(noGrad(() => residualAdd(x, y)).toArray()).toEqual(x.add(y).toArray());
    });
    expect(memory().liveTensors).toBe(before);
  });

  // fc2-like shapes (in >= 4·out, out <= 512) with at least 64 rows per thread run as one SGEMM per thread on its
  // block of rows (native/src/ops/fused.cc, Gemm). 203 rows = 13 blocks of 16 (the last short): uneven over 2 and 3
  // threads.
  test('the row-split SGEMM (in >= 4·out) equals the float64 product for 1, 2 and 3 threads', () => {
    const prev = getNumThreads();
    const before = memory().liveTensors;
    const g = new Generator(13);
    scope(() => {
      const x = randn([7, 29, 96], { generator: g });
      const w = randn([24, 96], { generator: g });
      const b = randn([24], { generator: g });
      const ref = linear(x.to('float64'), w.to('float64'), b.to('float64')).to('float32');
      const refNoBias = linear(x.to('float64'), w.to('float64')).to('float32');
      try {
        for (const n of [1, 2, 3]) {
          setNumThreads(n);
          expectClose(
            noGrad(() => linear(x, w, b)),
            ref,
            `fused, ${n} threads`,
            1e-5,
          );
          expectClose(
            noGrad(() => linear(x, w)),
            refNoBias,
            `fused without bias, ${n} threads`,
            1e-5,
          );
          expectClose(
            noGrad(() => linear(x, w, b, 'gelu')),
            gelu(ref),
            `fused + GELU, ${n} threads`,
            1e-5,
          );
          // The autograd SGEMM linear: same forward; its backward is checked against at::linear.
          const [x1, w1] = [x, w].map((t) => t.detach().requiresGrad_()) as [typeof x, typeof w];
          const y = linear(x1, w1, b);
          expectClose(y, ref, `autograd forward, ${n} threads`, 1e-5);
          y.pow(2).sum().backward();
          const [x2, w2] = [x, w].map((t) => t.detach().requiresGrad_()) as [typeof x, typeof w];
          withPlainKernels(() => linear(x2, w2, b))
            .pow(2)
            .sum()
            .backward();
          expectClose(x1.grad!, x2.grad!, `dx, ${n} threads`, 1e-5);
          expectClose(w1.grad!, w2.grad!, `dW, ${n} threads`, 1e-5);
        }
      } finally {
        setNumThreads(prev);
      }
    });
    expect(memory().liveTensors).toBe(before);
  });

  test('gradients flow through the plain linear + GELU and residualAdd', () => {
    scope(() => {
      const g = new Generator(9);
      const x = randn([3, 4], { generator: g, dtype: 'float64' });
      const w = randn([5, 4], { generator: g, dtype: 'float64' });
      const gamma = randn([5], { generator: g, dtype: 'float64' });
      const skip = randn([3, 5], { generator: g, dtype: 'float64' });
      const [w1, w2, g1, g2] = [w, w, gamma, gamma].map((t) => t.detach().requiresGrad_()) as [typeof w, typeof w, typeof w, typeof w];
      residualAdd(skip, linear(x, w1, null, 'gelu'), g1)
        .pow(2)
        .sum()
        .backward();
      skip
        .add(gelu(linear(x, w2)).mul(g2))
        .pow(2)
        .sum()
        .backward();
      expectClose(w1.grad!, w2.grad!, 'dW', 1e-12);
      expectClose(g1.grad!, g2.grad!, 'dγ', 1e-12);
    });
  });

  test.each([
    ['x, W and b', true, true, true],
    ['W only, no bias', false, true, false],
    ['x only', true, false, true],
  ])("the SGEMM linear records autograd: gradients (%s) equal at::linear's, 3-D and non-contiguous input", (_, gx, gw, withBias) => {
    scope(() => {
      const g = new Generator(21);
      const base = randn([3, 8, 5], { generator: g }).transpose(1, 2); // [3, 5, 8], non-contiguous
      const w0 = randn([6, 8], { generator: g });
      const b0 = randn([6], { generator: g });
      const up = randn([3, 5, 6], { generator: g });
      const run = (plain: boolean) =>
        scope(() => {
          const x = gx ? base.detach().requiresGrad_() : base;
          const w = gw ? w0.detach().requiresGrad_() : w0;
          const b = withBias ? b0.detach().requiresGrad_() : null;
          const y = plain ? withPlainKernels(() => linear(x, w, b, 'gelu')) : linear(x, w, b, 'gelu');
          y.mul(up).sum().backward();
          return { y, gx: x.grad, gw: w.grad, gb: b?.grad ?? null };
        });
      const [a, p] = [run(false), run(true)];
      expectClose(a.y, p.y, 'y', 1e-6);
      for (const k of ['gx', 'gw', 'gb'] as const) {
        expect(a[k] === null, k).toBe(p[k] === null);
        if (a[k] && p[k]) expectClose(a[k]!, p[k]!, k, 1e-5);
      }
      expect(a.gx === null).toBe(!gx);
      expect(a.gb === null).toBe(!withBias);
    });
  });

  // The training path's GELU (native GeluFunction: AVX2 erf and exp, forward and backward) against float64 ATen, from
  // the far negative tail (where e^(−x²/2) underflows) to the far positive one; 37 × 63 values leave a scalar tail.
  test('the fused linear + GELU backward equals the float64 GELU derivative within 1e-6 over [-10, 10]', () => {
    scope(() => {
      const x64 = linspace(-10, 10, 37 * 63, { dtype: 'float64' }).reshape([37, 63]);
      const up64 = randn([37, 63], { generator: new Generator(5), dtype: 'float64' });
      const eye63 = eye(63); // y = x·I = x exactly, so the GELU sees x itself
      const x = x64.float().detach().requiresGrad_();
      const y = linear(x, eye63, null, 'gelu');
      y.mul(up64.float()).sum().backward();
      const xr = x64.detach().requiresGrad_();
      gelu(xr).mul(up64).sum().backward();
      expectClose(y.to('float64'), gelu(x64), 'gelu', 1e-6);
      const d = x.grad!.to('float64').sub(xr.grad!).abs().max().item();
      expect(d).toBeLessThan(1e-6);
    });
  });

  test.each(['mlp', 'swiglu'] as const)(
    'a %s block gives the same output with the fused kernels as with the plain ones (eval, LayerScale, RoPE)',
    (ffnLayer) => {
      const before = memory().liveTensors;
      const blk = new SelfAttentionBlock(64, 4, { qkvBias: true, initValues: 0.5, maskKBias: true, ffnLayer }).eval();
      const rope = new RopePositionEmbedding(64, { numHeads: 4, dtype: 'float32' }).eval();
      scope(() => {
        const x = randn([2, 5 + 12, 64], { generator: new Generator(3) });
        const tables = rope.forward({ H: 3, W: 4 });
        const want = noGrad(() => withPlainKernels(() => blk.forward(x, tables)));
        expect(withPlainKernels(() => blk.forward(x, tables)).toArray()).toEqual(want.toArray()); // grad mode on: plain as well
        expectClose(
          noGrad(() => blk.forward(x, tables)),
          want,
          'block',
          1e-5,
        );
      });
      blk.dispose();
      rope.dispose();
      expect(memory().liveTensors).toBe(before);
    },
  );
});
