// CUDA-marked tests: they run only on a CUDA build with a visible GPU (skipped elsewhere, where
// test/unit/ops/device.test.ts checks the CPU-build errors instead). Same references as the CPU suite: the official
// fixtures for the backbone (float32, 1e-4), and the CPU result of the same call for ops and the optimizer.
// On a GPU machine: scripts/gpu/check.sh builds the addon against the CUDA libtorch and runs this file.
import { describe, expect, test } from 'vitest';

import {
  AdamW,
  addonInfo,
  autocast,
  cuda,
  Generator,
  interpolate,
  layerNorm,
  loadBackbone,
  matmul,
  memory,
  noGrad,
  randn,
  scaledDotProductAttention,
  scope,
  sdpaMath,
  softmax,
  TorchError,
  type Tensor,
} from '../../src/index.js';
import { disposeAll, expectClose, expectOfficialFeatures, FIXTURES, loadFixture } from '../unit/models/helpers.js';
import { errorOf } from '../unit/ops/util.js';

const onGpu = addonInfo.cudaCompiled && cuda.isAvailable();
const g = (seed: number) => new Generator(seed);

describe.runIf(onGpu)('CUDA', () => {
  test('ops on CUDA match the same ops on CPU (float32)', () => {
    scope(() => {
      const x = randn([4, 8, 16], { generator: g(1) });
      const w = randn([16, 16], { generator: g(2) });
      const xc = x.to('cuda');
      const wc = w.to('cuda');
      expect(xc.device).toBe('cuda:0');
      expectClose(matmul(xc, wc).cpu(), matmul(x, w), 'matmul', 1e-5);
      expectClose(softmax(xc, -1).cpu(), softmax(x, -1), 'softmax', 1e-5);
      expectClose(layerNorm(xc, [16], null, null).cpu(), layerNorm(x, [16], null, null), 'layerNorm', 1e-5);
      expectClose(xc.gelu().cpu(), x.gelu(), 'gelu', 1e-5);
      const img = randn([2, 3, 32, 32], { generator: g(3) });
      const o = { size: [20, 20] as [number, number], mode: 'bicubic' as const, antialias: true };
      expectClose(interpolate(img.to('cuda'), o).cpu(), interpolate(img, o), 'interpolate', 1e-4);
    });
  });

  test('scaled dot-product attention (flash/efficient kernels in bfloat16) matches the math composition', () => {
    scope(() => {
      const [q, k, v] = [4, 5, 6].map((s) => randn([2, 6, 197, 64], { generator: g(s), device: 'cuda', dtype: 'bfloat16' })) as [Tensor, Tensor, Tensor];
      const ref = sdpaMath(q.float(), k.float(), v.float());
      const out = scaledDotProductAttention(q, k, v);
      expect(out.dtype).toBe('bfloat16');
      expectClose(out.float().cpu(), ref.cpu(), 'sdpa bf16', 2e-2);
    });
  });

  test('the official backbone fixture on CUDA matches within 1e-4 (float32)', async () => {
    const io = await loadFixture('official_vits_like_io.safetensors');
    const { model } = await loadBackbone(FIXTURES + 'official_vits_like.safetensors', { device: 'cuda' });
    scope(() => {
      const f = model.forwardFeatures(io.get('input')!.to('cuda'));
      expect(f.patchTokens.device).toBe('cuda:0');
      expectOfficialFeatures(f, io); // (the comparison copies to the host)
    });
    model.dispose();
    disposeAll(io);
  });

  test('bfloat16 autocast keeps float32 weights and lands within 5e-2 (relative Frobenius) of the float32 forward', async () => {
    const io = await loadFixture('official_vits_like_io.safetensors');
    const { model } = await loadBackbone(FIXTURES + 'official_vits_like.safetensors', { device: 'cuda' });
    scope(() => {
      const x = io.get('input')!.to('cuda');
      const ref = noGrad(() => model.forwardFeatures(x).patchTokens);
      const mixed = noGrad(() => autocast(() => model.forwardFeatures(x).patchTokens, { device: 'cuda' }));
      expect(model.parameters()[0]!.dtype).toBe('float32');
      // Relative Frobenius error (bf16 rounding is ~0.4% per op; elementwise bounds would be arbitrary). CPU autocast
      // on the same model gives 3.1e-2.
      const relErr = Math.sqrt(mixed.float().sub(ref).square().sum().item() / ref.square().sum().item());
      expect(relErr).toBeLessThan(5e-2);
      const y = autocast(() => matmul(x.flatten(1).narrow(1, 0, 64), randn([64, 8], { device: 'cuda' })), { device: 'cuda' });
      expect(y.dtype).toBe('bfloat16');
    });
    model.dispose();
    disposeAll(io);
  });

  test.each([false, true])('AdamW on CUDA (fused: %s) gives the CPU result after 3 steps', (fused) => {
    scope(() => {
      const init = randn([32, 16], { generator: g(7) });
      const grads = [8, 9, 10].map((s) => randn([32, 16], { generator: g(s) }));
      const run = (device: 'cpu' | 'cuda', fusedOpt: boolean) => {
        const p = init.to(device).clone().requiresGrad_();
        const opt = new AdamW([{ params: [p], lr: 1e-2, weightDecay: 0.04 }], { fused: fusedOpt && device === 'cuda' });
        for (const gr of grads) {
          p.grad = gr.to(device);
          opt.step();
        }
        const out = p.detach().cpu();
        opt.dispose();
        return out;
      };
      expectClose(run('cuda', fused), run('cpu', false), `AdamW fused=${fused}`, 1e-5);
    });
  });

  test('CUDA memory returns to its baseline after dispose; bytes are counted on the CUDA side', () => {
    const before = memory();
    const t = randn([1024, 1024], { device: 'cuda' });
    expect(memory().cudaBytes - before.cudaBytes).toBe(4 * 1024 * 1024);
    expect(memory().cudaAllocated).toBeGreaterThanOrEqual(before.cudaAllocated + 4 * 1024 * 1024);
    t.dispose();
    cuda.synchronize();
    expect(memory().cudaBytes).toBe(before.cudaBytes);
    expect(memory().cudaAllocated).toBe(before.cudaAllocated);
    expect(memory().liveTensors).toBe(before.liveTensors);
  });

  test('async and pinned non-blocking copies bring the same values back', async () => {
    const x = randn([256, 256], { generator: g(11) });
    const pinned = x.pinMemory();
    const dev = pinned.to({ device: 'cuda', nonBlocking: true });
    const back = await dev.dataAsync();
    expect(Array.from((back as Float32Array).subarray(0, 8))).toEqual(Array.from((x.data() as Float32Array).subarray(0, 8)));
    for (const t of [x, pinned, dev]) t.dispose();
  });

  test('mixing devices is a clear error and the process goes on', () => {
    scope(() => {
      const a = randn([2, 2], { device: 'cuda' });
      const b = randn([2, 2]);
      const e = errorOf(() => a.add(b));
      expect(e).toBeInstanceOf(TorchError);
      expect(e.message).toMatch(/^add: Expected all tensors to be on the same device/);
      expect(a.add(1).sum().cpu().item()).toBeCloseTo(a.sum().item() + 4, 4);
    });
  });
});
