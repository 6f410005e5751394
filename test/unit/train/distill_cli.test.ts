// `dinov3 distill` in process: a tiny trained teacher (run folder) distilled into two students on synthetic data,
// each student's EMA exported in its sub-folder; option errors.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, describe, expect, test } from 'vitest';

import { run } from '../../../src/cli/program.js';
import { parseOverrides } from '../../../src/train/config.js';
import { SyntheticBatches } from '../../../src/train/synthetic.js';
import { Trainer } from '../../../src/train/trainer.js';
import { loadSSLConfig } from '../../../src/train/config.js';
import { TINY_ARCH } from './tiny.js';

const TINY = [
  ...TINY_ARCH,
  'train.OFFICIAL_EPOCH_LENGTH=2',
  'optim.epochs=2',
  'optim.warmup_epochs=1',
  'teacher.warmup_teacher_temp_epochs=1',
  'checkpointing.period=10',
  'evaluation.eval_period_iterations=0',
];
const dir = mkdtempSync(join(tmpdir(), 'dinov3-distill-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const capture = () => {
  const chunks = { out: '', err: '' };
  const io = {
    stdout: { write: (s: string) => (chunks.out += s) },
    stderr: Object.assign(new Writable({ write: (c, _e, cb) => ((chunks.err += String(c)), cb()) }), { isTTY: false }),
  };
  return { io, chunks };
};

describe('dinov3 distill', () => {
  test('teacher run folder → two students, one sub-folder and one exported EMA each', { timeout: 240_000 }, async () => {
    const tiny = parseOverrides(TINY);
    const teacherCfg = join(dir, 'teacher.json');
    writeFileSync(teacherCfg, JSON.stringify(tiny));
    const teacherRun = join(dir, 'teacher_run');
    const t = await Trainer.create(await loadSSLConfig(teacherCfg), {
      data: new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 1 }),
      outDir: teacherRun,
      maxIterations: 2,
    });
    await t.fit();
    t.dispose();
    const s1 = join(dir, 's1.json');
    writeFileSync(s1, JSON.stringify({ ...tiny, train: { ...(tiny.train as object), seed: 5 } }));
    const out = join(dir, 'run');
    const c = capture();
    const code = await run(
      [
        'distill',
        '--config',
        teacherCfg,
        '--teacher-config',
        teacherCfg,
        '--teacher',
        teacherRun,
        '--student',
        `a=${s1}`,
        '--student',
        `b=${teacherCfg}`,
        '--data',
        'synthetic',
        '--out',
        out,
        '--progress-every',
        '2',
        'dino.koleo_loss_weight=0.2',
      ],
      c.io,
    );
    expect(c.chunks.err).not.toMatch(/error/);
    expect(code).toBe(0);
    const r = JSON.parse(c.chunks.out) as { iterations: number; stoppedBy: string; exports: Record<string, string> };
    expect(r).toMatchObject({ iterations: 4, stoppedBy: 'end' });
    expect(r.exports).toEqual({ a: join(out, 'a', 'teacher_checkpoint.safetensors'), b: join(out, 'b', 'teacher_checkpoint.safetensors') });
    for (const n of ['a', 'b']) {
      expect(existsSync(r.exports[n]!)).toBe(true);
      expect(readFileSync(join(out, n, 'config.yaml'), 'utf8')).toMatch(/koleo_loss_weight: 0.2/);
    }
    expect(c.chunks.err).toMatch(/\[a\] it 0: total /);
  });

  test('--device: a CUDA device this build cannot use is refused before anything is read or written', async () => {
    const { addonInfo, cuda } = await import('../../../src/index.js');
    const c = capture();
    const out = join(dir, 'never-cuda');
    expect(await run(['distill', '--config', 'missing.json', '--data', 'synthetic', '--out', out, '--device', 'cuda'], c.io)).toBe(1);
    if (!cuda.isAvailable())
      expect(c.chunks.err).toBe(
        `error: distill: --device cuda: CUDA is not available (libtorch ${addonInfo.torchVersion}, ${addonInfo.cudaCompiled ? 'no GPU found' : 'built without CUDA'})\n`,
      );
    expect(existsSync(out)).toBe(false);
    const g = capture();
    expect(await run(['distill', '--config', 'x.json', '--data', 'synthetic', '--out', out, '--device', 'gpu'], g.io)).toBe(1);
    expect(g.chunks.err).toBe("error: option '--device <device>' argument 'gpu' is invalid. expected cpu, cuda or cuda:<index>.\n");
  });

  test('a student argument without a name is refused', async () => {
    const c = capture();
    expect(await run(['distill', '--config', 'x.json', '--student', 'oops', '--data', 'synthetic', '--out', dir], c.io)).toBe(1);
    expect(c.chunks.err).toMatch(/expected name=<config file or preset>/);
  });
});
