// Exact resume across a real SIGKILL of the training process: one kill right as a step's metrics are out (the
// checkpoint write that follows is in flight), one kill in the middle of a later step; each time the run resumes
// from the latest complete checkpoint. The final weights and the per-iteration losses equal an uninterrupted run
// bit for bit (same binary, same threads, CPU).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, expect, test } from 'vitest';

import { loadLatestCheckpoint } from '../../../src/train/checkpointer.js';
import { loadSSLConfig } from '../../../src/train/config.js';
import { SyntheticBatches } from '../../../src/train/synthetic.js';
import { Trainer } from '../../../src/train/trainer.js';
import { ensureDist, ROOT } from '../cli/dist.js';
import { tinyOverrides } from './tiny.js';

const OVERRIDES = tinyOverrides({ dropPath: 0.1, checkpointPeriod: 1 });
const DATA = { batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 3 };
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const losses = (dir: string) =>
  readFileSync(join(dir, 'training_metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const r = JSON.parse(l) as { iteration: number; total_loss: number };
      return [r.iteration, r.total_loss];
    });

test('SIGKILL during a checkpoint write and mid-step, then resume: bit-exact with an uninterrupted run', { timeout: 300_000 }, async () => {
  ensureDist();
  const ref = mkdtempSync(join(tmpdir(), 'dinov3-kill-ref-'));
  const dir = mkdtempSync(join(tmpdir(), 'dinov3-kill-'));
  dirs.push(ref, dir);
  const cfg = await loadSSLConfig('ssl_default', OVERRIDES);
  const t = await Trainer.create(cfg, { data: new SyntheticBatches(DATA), outDir: ref });
  await t.fit();
  const refParams = Object.fromEntries(t.model.student.namedParameters().map(([n, p]) => [n, p.toFloat32Array()]));
  t.dispose();

  const script = `
    import { loadSSLConfig } from ${JSON.stringify(join(ROOT, 'dist/src/train/config.js'))};
    import { SyntheticBatches } from ${JSON.stringify(join(ROOT, 'dist/src/train/synthetic.js'))};
    import { Trainer } from ${JSON.stringify(join(ROOT, 'dist/src/train/trainer.js'))};
    const [dir, overrides, data] = [process.argv[1], JSON.parse(process.argv[2]), JSON.parse(process.argv[3])];
    const cfg = await loadSSLConfig('ssl_default', overrides);
    const t = await Trainer.create(cfg, { data: new SyntheticBatches(data), outDir: dir, resume: true,
      onMetrics: (m) => process.stdout.write('step ' + m.iteration + '\\n') });
    process.stdout.write('start ' + t.iteration + '\\n');
    await t.fit();
    t.dispose();
    process.stdout.write('done\\n');`;
  // Kill plans: [the step whose line triggers the kill, delay in ms]. Delay 0: the checkpoint of that step is being
  // written; a delay of about half a step (measured) lands inside the next step.
  const runChild = (killAfter: number | null, delayMs: number) =>
    new Promise<{ start: number; killed: boolean }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script, dir, JSON.stringify(OVERRIDES), JSON.stringify(DATA)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      let start = -1;
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /start (\d+)/.exec(out);
        if (m) start = Number(m[1]);
        if (killAfter !== null && out.includes(`step ${killAfter}\n`)) setTimeout(() => child.kill('SIGKILL'), delayMs);
      });
      child.on('exit', (code, signal) => {
        if (signal === 'SIGKILL') resolve({ start, killed: true });
        else if (code === 0) resolve({ start, killed: false });
        else reject(new Error(`child exited ${code}: ${err}`));
      });
    });
  const first = await runChild(3, 0);
  expect(first).toEqual({ start: 0, killed: true });
  const second = await runChild(7, 60);
  expect(second.killed).toBe(true);
  expect(second.start).toBeGreaterThanOrEqual(3); // resumed from a checkpoint, not from scratch
  const third = await runChild(null, 0);
  expect(third.killed).toBe(false);
  expect(third.start).toBeGreaterThanOrEqual(7);

  expect(losses(dir)).toEqual(losses(ref));
  const ck = await loadLatestCheckpoint(dir);
  const saved = Object.fromEntries([...ck!.tensors.student!].filter(([n]) => n in refParams).map(([n, x]) => [n, x.toFloat32Array()]));
  expect(Object.keys(saved).sort()).toEqual(Object.keys(refParams).sort());
  expect(saved).toEqual(refParams);
  ck!.dispose();
});
