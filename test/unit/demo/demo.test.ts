// The demo (`npm run demo`) end to end, shortened: it trains on real Fashion-MNIST images, learns (accuracy well
// above the 10% of chance), leaks no tensors, and writes an EMA backbone that loads back strictly.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';

import { loadBackbone } from '../../../src/index.js';
import { ensureDist, ROOT } from '../cli/dist.js';

const out = mkdtempSync(join(tmpdir(), 'dinov3-demo-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

test.runIf(existsSync('/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz'))(
  'a short demo run trains, evaluates and saves a loadable backbone',
  async () => {
    ensureDist();
    const main = join(ROOT, 'dist', 'src', 'demo', 'main.js');
    const stdout = execFileSync(process.execPath, [main, '--limit', '4096', '--batch', '128', '--lr', '3e-3', '--ema', '0.8', '--eval-limit', '1000', '--out', out], {
      encoding: 'utf8',
    });
    const acc = /test accuracy: ([\d.]+)% \(EMA backbone: ([\d.]+)%\)/.exec(stdout);
    expect(acc, stdout).not.toBeNull();
    expect(Number(acc![1])).toBeGreaterThan(40);
    expect(stdout).toContain('live tensors after training: 0 beyond');
    const losses = [...stdout.matchAll(/loss ([\d.]+)/g)].map((m) => Number(m[1]));
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);
    const { model, report } = await loadBackbone(join(out, 'fashion_mnist_vit_ema.safetensors'), {
      config: { img_size: 28, patch_size: 4, in_chans: 1, embed_dim: 96, depth: 4, num_heads: 4, ffn_ratio: 3, n_storage_tokens: 4, layerscale_init: 0.1, norm_layer: 'layernormbf16', mask_k_bias: true, pos_embed_rope_dtype: 'fp32' },
    });
    expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
    model.dispose();
  },
  300_000,
);
