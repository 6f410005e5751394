// scripts/gpu/bench-matrix.sh runs only where a GPU is lent (15 minutes, no time for fixing scripts there): its
// DRY=1 run on the CPU here keeps the script and the `dinov3 bench` commands it calls working. It checks the JSON
// files' form and that nothing leaked, never the timings.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect, test } from 'vitest';

import { ensureDist, ROOT } from '../cli/dist.js';

test('scripts/gpu/bench-matrix.sh DRY=1 writes one JSON per entry (a training step and bf16 / autocast features)', () => {
  ensureDist();
  const out = mkdtempSync(join(tmpdir(), 'dinov3-gpu-dry-'));
  const only = 'train-vitl16-b64,train-vits16-b64-host-prefetch,train-vitl16-b64-checkpointing,features-vits16-224-b256,features-vitl16-224-b256-autocast';
  const r = spawnSync('bash', ['scripts/gpu/bench-matrix.sh'], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, OUT: out, DEVICE: 'cpu', DRY: '1', ONLY: only },
  });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout).not.toContain('FAILED');
  const read = (name: string) => JSON.parse(readFileSync(join(out, `bench-${name}.json`), 'utf8'));
  const train = read('train-vitl16-b64');
  expect(train).toMatchObject({ bench: 'train', preset: 'tiny', device: 'cpu', crops: '2x32,2x16', leakedTensors: 0, peak: { dtype: 'float32', n: 64 } });
  expect(train.flops.total).toBeGreaterThan(0);
  expect(train.imgPerSec).toBeGreaterThan(0);
  expect(train.hostBatches).toBe(null);
  expect(read('train-vits16-b64-host-prefetch')).toMatchObject({
    bench: 'train',
    preset: 'tiny',
    hostBatches: 'prefetch',
    hostSyncsPerStep: 1,
    leakedTensors: 0,
  });
  expect(read('features-vits16-224-b256')).toMatchObject({
    bench: 'features',
    dtype: 'bfloat16',
    autocast: false,
    leakedTensors: 0,
    peak: { dtype: 'bfloat16' },
  });
  const ac = read('features-vitl16-224-b256-autocast');
  expect(ac).toMatchObject({ bench: 'features', dtype: 'float32', autocast: true, leakedTensors: 0, peak: { dtype: 'bfloat16' } });
  expect(ac.mfu).toBeGreaterThan(0);
  rmSync(out, { recursive: true, force: true });
});
