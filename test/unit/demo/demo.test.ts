// The demo (`npm run demo`, the SSL quickstart) end to end, shortened: it pretrains on real Fashion-MNIST images
// without labels, reports k-NN accuracy before and after, writes the PCA picture and the loss curve, leaks no
// tensors, and exports a teacher backbone that loads back.
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
  'a short demo run pretrains, evaluates, draws and exports a loadable teacher',
  async () => {
    ensureDist();
    const main = join(ROOT, 'dist', 'src', 'demo', 'main.js');
    const stdout = execFileSync(process.execPath, [main, '--minutes', '0.15', '--eval-train', '1000', '--eval-test', '200', '--out', out], {
      encoding: 'utf8',
    });
    const before = /k-NN@20 of the random-init network: ([\d.]+)% \(centred features: ([\d.]+)%\)/.exec(stdout);
    const after = /k-NN@20 of the trained teacher after (\d+) iterations: ([\d.]+)% \(centred: ([\d.]+)%\)/.exec(stdout);
    expect(before, stdout).not.toBeNull();
    expect(after, stdout).not.toBeNull();
    expect(Number(after![1])).toBeGreaterThan(0);
    // 10 classes. With the official init (LayerScale 1e-5) every random-init CLS token is nearly the same vector, so
    // plain cosine k-NN sits at chance (~10%); centred, random features of real images are well above it.
    expect(Number(before![1])).toBeLessThan(20);
    expect(Number(before![2])).toBeGreaterThan(20);
    expect(Number(after![3])).toBeGreaterThan(20);
    expect(stdout).toContain('live tensors after training: 0 beyond the start');
    for (const f of ['pca.png', 'loss_curve.png', 'run/teacher_checkpoint.safetensors', 'run/config.yaml', 'run/training_metrics.jsonl'])
      expect(existsSync(join(out, f)), f).toBe(true);
    const { model } = await loadBackbone(join(out, 'run', 'teacher_checkpoint.safetensors'));
    expect([model.embedDim, model.nBlocks, model.patchSize, model.nStorageTokens]).toEqual([96, 4, 4, 0]);
    model.dispose();
  },
  300_000,
);
