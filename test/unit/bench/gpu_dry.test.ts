// bench/gpu.ts runs only where a GPU is lent (15 minutes, no time for fixing scripts there): its `--device cpu` dry
// run here keeps the script working. It checks the JSON's form and that nothing leaked, never the timings.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect, test } from 'vitest';

import { ensureDist, ROOT } from '../cli/dist.js';

test('bench/gpu.js --device cpu writes the matmul and both feature variants for each model', () => {
  ensureDist();
  const dir = mkdtempSync(join(tmpdir(), 'dinov3-gpu-dry-'));
  const out = join(dir, 'gpu.json');
  const args = ['--device', 'cpu', '--models', 'vits16', '--batch', '1', '--res', '32', '--iters', '1', '--warmup', '0', '--matmul', '64'];
  const r = spawnSync(process.execPath, [join(ROOT, 'dist', 'bench', 'gpu.js'), ...args, '--out', out], { cwd: ROOT, encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const j = JSON.parse(readFileSync(out, 'utf8'));
  expect(j.matmul).toMatchObject({ n: 64, dtype: 'bfloat16' });
  expect(j.features).toHaveLength(1);
  expect(j.features[0].model).toBe('vits16');
  for (const v of ['bf16Weights', 'autocastBf16']) expect(j.features[0][v].imgPerSec).toBeGreaterThan(0);
  expect(j.leakedTensors).toBe(0);
  rmSync(dir, { recursive: true, force: true });
});
