// `dinov3 bench features|train` with the tiny preset on the CPU (1–2 steps): the JSON's form, the counted FLOPs and
// the kernel report, never the timings. Also the synthetic batch's layout (official collate) and the option errors.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, test } from 'vitest';

import { syntheticBatch, TINY_PRESET } from '../../../src/cli/bench.js';
import { maskedPatchCounts, trainStepFlops, vitForwardFlops } from '../../../src/cli/flops.js';
import { run } from '../../../src/cli/program.js';
import { disposeBatch } from '../../../src/data/batch.js';
import { memory } from '../../../src/index.js';
import { ensureDist, ROOT } from './dist.js';

const tmp = mkdtempSync(join(tmpdir(), 'dinov3-bench-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function dinov3(...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await run(argv, { stdout: { write: (s: string) => ((stdout += s), true) }, stderr: { write: (s: string) => ((stderr += s), true) } } as never);
  return { code, stdout, stderr };
}

const number = expect.any(Number);

describe('dinov3 bench', () => {
  test('features: the JSON of a tiny run (FLOPs counted, kernels reported, peak measured, nothing leaked)', async () => {
    const out = join(tmp, 'features.json');
    const r = await dinov3(
      'bench',
      'features',
      '--preset',
      'tiny',
      '--batch',
      '2',
      '--resolution',
      '32',
      '--steps',
      '2',
      '--warmup',
      '1',
      '--threads',
      '2',
      '--peak-n',
      '64',
      '--out',
      out,
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(j);
    const perImage = vitForwardFlops(TINY_PRESET.config, 32).total;
    expect(j).toMatchObject({
      bench: 'features',
      preset: 'tiny',
      device: 'cpu',
      threads: 2,
      dtype: 'float32',
      autocast: false,
      batch: 2,
      resolution: 32,
      steps: 2,
      sPerIter: number,
      imgPerSec: number,
      flops: { perImage, perIter: 2 * perImage },
      flopsPerSec: number,
      mfu: number,
      peak: { flopsPerSec: number, dtype: 'float32', n: 64 },
      memoryKind: 'cpu-max-rss',
      kernels: { linear: 'fused-cpu', attention: 'fused-cpu', residualAdd: 'fused-cpu' },
      leakedTensors: 0,
    });
    expect(j.sPerIter).toBeGreaterThan(0);
    expect(Math.abs(j.imgPerSec - 2 / j.sPerIter) / j.imgPerSec).toBeLessThan(1e-3);
    expect(j.mfu).toBeGreaterThan(0);
    expect(j.peakMemoryBytes).toBeGreaterThan(0);
  });

  test('train: the JSON of a tiny run of the SSL iteration with global and local crops', async () => {
    const r = await dinov3('bench', 'train', '--preset', 'tiny', '--batch', '2', '--crops', '2x32,4x16', '--steps', '1', '--warmup', '1', '--peak-n', '0');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    const flops = trainStepFlops(TINY_PRESET.config, {
      batch: 2,
      crops: [
        { count: 2, size: 32 },
        { count: 4, size: 16 },
      ],
      dinoHead: TINY_PRESET.head,
      ibotHead: TINY_PRESET.head,
    });
    expect(j).toMatchObject({
      bench: 'train',
      preset: 'tiny',
      device: 'cpu',
      autocast: false,
      batch: 2,
      crops: '2x32,4x16',
      heads: TINY_PRESET.head,
      steps: 1,
      sPerIter: number,
      imgPerSec: number,
      flops,
      flopsPerSec: number,
      mfu: null,
      peak: null,
      memoryKind: 'cpu-max-rss',
      kernels: {
        student: { linear: 'fused-cpu', attention: 'plain', residualAdd: 'plain' },
        teacher: { linear: 'fused-cpu', attention: 'fused-cpu', residualAdd: 'fused-cpu' },
      },
      hostSyncsPerStep: 1, // the metrics read, nothing else (train/host_syncs.test.ts)
      hostBatches: null,
      activationCheckpointing: false,
      leakedTensors: 0,
    });
    expect(j.step).toMatch(/^SSL iteration/);
  });

  test('train --host-batches / --activation-checkpointing: host batches fed through the prefetcher or inline, blocks recomputed; one wait per step, nothing leaked', async () => {
    for (const [args, mode] of [
      [['--host-batches'], 'prefetch'],
      [['--host-batches', 'inline'], 'inline'],
    ] as const) {
      const r = await dinov3(...'bench train --preset tiny --batch 2 --crops 2x32,2x16 --steps 2 --warmup 1 --peak-n 0'.split(' '), ...args);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ hostBatches: mode, hostSyncsPerStep: 1, leakedTensors: 0, steps: 2 });
    }
    const ac = await dinov3(...'bench train --preset tiny --batch 2 --crops 2x32,2x16 --steps 1 --warmup 1 --peak-n 0 --activation-checkpointing'.split(' '));
    expect(ac.code).toBe(0);
    expect(JSON.parse(ac.stdout)).toMatchObject({ activationCheckpointing: true, hostBatches: null, hostSyncsPerStep: 1, leakedTensors: 0 });
    const bad = await dinov3(...'bench train --preset tiny --steps 1 --host-batches eager'.split(' '));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch("error: option '--host-batches [mode]' argument 'eager' is invalid. Allowed choices are prefetch, inline.");
  });

  test('train --phases: seconds per timed step of each phase of the iteration, adding up to the step', async () => {
    const r = await dinov3(...'bench train --preset tiny --batch 2 --crops 2x32,2x16 --steps 3 --warmup 1 --peak-n 0 --phases'.split(' '));
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(Object.keys(j.phases)).toEqual(['teacher', 'student_forward', 'losses', 'backward', 'clip', 'metrics_read', 'optimizer', 'ema']);
    const sum = Object.values(j.phases as Record<string, number>).reduce((a, b) => a + b, 0);
    for (const v of Object.values(j.phases as Record<string, number>)) expect(v).toBeGreaterThanOrEqual(0);
    // the phases cover the step but for the bookkeeping between them (scopes, schedules, the timing itself)
    expect(sum).toBeLessThanOrEqual(j.sPerIter * 1.001);
    expect(sum).toBeGreaterThan(j.sPerIter * 0.5);
  });

  test('the compiled command prints the same JSON form', () => {
    const cli = ensureDist();
    const r = spawnSync(
      process.execPath,
      [
        cli,
        'bench',
        'train',
        '--preset',
        'tiny',
        '--batch',
        '2',
        '--crops',
        '2x32,2x16',
        '--steps',
        '1',
        '--warmup',
        '0',
        '--peak-n',
        '0',
        '--prototypes',
        '16',
      ],
      {
        cwd: ROOT,
        encoding: 'utf8',
      },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.heads.prototypes).toBe(16);
    expect(j.flops.maskedPatches).toBe(3); // int(4 patches · linspace(0.1, 0.5, 3)[k + 1]) = 1, 2 on the two masked crops of four
  });

  test('errors: a CUDA device on a CPU build, an unknown preset, bad crops', async () => {
    let r = await dinov3('bench', 'features', '--preset', 'tiny', '--device', 'cuda', '--steps', '1');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: bench: --device cuda: CUDA is not available/);
    r = await dinov3('bench', 'features', '--preset', 'tiny', '--cuda-graph', '--steps', '1');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('error: bench features: --cuda-graph needs --device cuda\n');
    r = await dinov3('bench', 'features', '--preset', 'vits17', '--steps', '1');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error: unknown backbone preset "vits17" (did you mean "vits16"?)');
    r = await dinov3('bench', 'train', '--preset', 'tiny', '--crops', '2x30', '--steps', '1');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error: bench train: crop size 30 is not a multiple of the patch size 16');
    r = await dinov3('bench', 'train', '--preset', 'tiny', '--crops', 'two');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('crops: expected <count>x<size>');
  });
});

describe('syntheticBatch', () => {
  test('the official collate layout: crop-major crops, masks with the official counts, flat indices and weights', () => {
    const before = memory().liveTensors;
    const b = syntheticBatch({
      batch: 3,
      crops: [
        { count: 2, size: 64 },
        { count: 2, size: 32 },
      ],
      patchSize: 16,
      device: 'cpu',
    });
    expect(b.collated_global_crops.shape).toEqual([6, 3, 64, 64]);
    expect(b.collated_local_crops.shape).toEqual([6, 3, 32, 32]);
    expect(b.collated_masks.shape).toEqual([6, 16]);
    expect(b.collated_masks.dtype).toBe('bool');
    const flat = (b.collated_masks.toArray() as unknown[]).map(Boolean);
    const perCrop = Array.from({ length: 6 }, (_, i) => flat.slice(i * 16, (i + 1) * 16).filter(Boolean).length);
    expect(perCrop.sort((x, y) => x - y)).toEqual(maskedPatchCounts(6, 16).sort((x, y) => x - y));
    const idx = b.mask_indices_list.toArray() as number[];
    const M = perCrop.reduce((s, v) => s + v, 0);
    expect(idx).toHaveLength(M);
    expect(b.n_masked_patches.toArray()).toEqual([M]);
    expect(b.upperbound).toBe(M);
    expect(idx.every((i) => flat[i] === true)).toBe(true);
    // Each masked patch weighs 1 / (masked patches of its crop): the weights of a crop sum to 1.
    const w = b.masks_weight.toArray() as number[];
    const sums = new Map<number, number>();
    idx.forEach((i, k) => sums.set(Math.floor(i / 16), (sums.get(Math.floor(i / 16)) ?? 0) + w[k]!));
    for (const s of sums.values()) expect(s).toBeCloseTo(1, 6);
    disposeBatch(b);
    expect(memory().liveTensors).toBe(before);
  });
});
