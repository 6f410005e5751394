// The kernel choice on CUDA (native/src/ops/fused.cc): attention through scaled_dot_product_attention (flash /
// memory-efficient for 16-bit inputs on libtorch >= 2.1), residualAdd as one addcmul, linear + GELU; each against the
// plain CPU result of the same call. Runs only on a CUDA build with a visible GPU (scripts/gpu/check.sh).
import { describe, expect, test } from 'vitest';

import { addonInfo, cuda, Generator, linear, noGrad, randn, RopePositionEmbedding, scope } from '../../src/index.js';
import { attention, kernelChoice, residualAdd } from '../../src/ops/kernels.js';
import { expectClose } from '../unit/models/helpers.js';

const onGpu = addonInfo.cudaCompiled && cuda.isAvailable();
const at21 = (() => {
  const [maj, min] = addonInfo.torchVersion.split('.').map(Number) as [number, number];
  return maj > 2 || (maj === 2 && min >= 1);
})();

describe.runIf(onGpu)('kernels on CUDA', () => {
  test('kernelChoice: flash-cuda attention (libtorch >= 2.1), fused-cuda residualAdd, plain linear', () => {
    scope(() => {
      const x = randn([2, 3], { device: 'cuda' });
      expect(kernelChoice('attention', x)).toBe(at21 ? 'flash-cuda' : 'plain');
      expect(kernelChoice('residualAdd', x)).toBe('fused-cuda');
      expect(noGrad(() => kernelChoice('linear', x))).toBe('plain');
    });
  });

  test.each(['float32', 'bfloat16'] as const)('attention with RoPE, linear + GELU and residualAdd (%s) match the CPU', (dtype) => {
    const tol = dtype === 'float32' ? 1e-4 : 3e-2;
    const rope = new RopePositionEmbedding(64, { numHeads: 4, dtype: 'float32' }).eval();
    scope(() => {
      const gen = new Generator(3);
      const tables = rope.forward({ H: 4, W: 4 });
      const qkv = randn([2, 5 + 16, 192], { generator: gen });
      const want = attention(qkv, 4, tables);
      const got = attention(qkv.to('cuda').to(dtype), 4, { sin: tables.sin.to('cuda'), cos: tables.cos.to('cuda') });
      expectClose(got.to('cpu').to('float32'), want, `attention ${dtype}`, tol);
      const x = randn([4, 32], { generator: gen });
      const w = randn([48, 32], { generator: gen }).mul(0.2);
      const b = randn([48], { generator: gen });
      const on = (t: typeof x) => t.to('cuda').to(dtype);
      expectClose(
        noGrad(() => linear(on(x), on(w), on(b), 'gelu'))
          .to('cpu')
          .to('float32'),
        linear(x, w, b, 'gelu'),
        `linear+GELU ${dtype}`,
        tol,
      );
      const y = randn([4, 32], { generator: gen });
      const gamma = randn([32], { generator: gen });
      expectClose(residualAdd(on(x), on(y), on(gamma)).to('cpu').to('float32'), residualAdd(x, y, gamma), `residualAdd ${dtype}`, tol);
    });
    rope.dispose();
  });
});
