// Multi-student distillation: one teacher forward per batch, students independent of each other (each equals its
// single-student run bit for bit), each student's EMA exported, resume, and the official compatibility checks.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, test } from 'vitest';

import { ConfigError, loadBackbone } from '../../../src/index.js';
import { trainingBackboneConfig } from '../../../src/config/presets.js';
import { loadSSLConfig, type SSLConfig } from '../../../src/train/config.js';
import { checkDistillationPair, loadDistillationSetup, MultiDistiller } from '../../../src/train/multidist_meta_arch.js';
import { SyntheticBatches } from '../../../src/train/synthetic.js';
import { Trainer } from '../../../src/train/trainer.js';
import type { IterationMetrics } from '../../../src/train/train.js';
import { TINY_ARCH } from './tiny.js';

const TINY = [
  ...TINY_ARCH,
  'train.OFFICIAL_EPOCH_LENGTH=3',
  'optim.epochs=2',
  'optim.warmup_epochs=1',
  'teacher.warmup_teacher_temp_epochs=1',
  'checkpointing.period=2',
  'evaluation.eval_period_iterations=0',
];
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'dinov3-distill-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const data = () => new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 11 });
const cfg = (extra: string[] = []): Promise<SSLConfig> => loadSSLConfig('ssl_default', [...TINY, ...extra]);

let teacherRun: string | undefined;
/** A tiny trained teacher (a run folder: its checkpoint holds backbone and heads). */
async function teacher(): Promise<{ cfg: SSLConfig; checkpoint: string }> {
  const c = await cfg(['dino.head_hidden_dim=56', 'train.seed=3']);
  if (!teacherRun) {
    teacherRun = tmp();
    const t = await Trainer.create(c, { data: data(), outDir: teacherRun, maxIterations: 2 });
    await t.fit();
    t.dispose();
  }
  return { cfg: c, checkpoint: teacherRun };
}

describe('MultiDistiller', () => {
  test('one teacher forward per batch; each of two students equals its single-student run; EMAs exported', { timeout: 240_000 }, async () => {
    const T = await teacher();
    // a smaller student than the 64-wide teacher: 32 wide, one block
    const a = {
      name: 'small',
      cfg: await cfg([
        'train.seed=1',
        'student.drop_path_rate=0.1',
        'student.arch=vit_custom',
        'student.embed_dim=32',
        'student.depth=1',
        'student.num_heads=2',
      ]),
    };
    const b = { name: 'other', cfg: await cfg(['train.seed=2', 'dino.koleo_loss_weight=0.2']) };
    const out = tmp();
    const seen: Record<string, IterationMetrics[]> = { small: [], other: [] };
    const d = await MultiDistiller.create(T, [a, b], { data: data(), outDir: out, onMetrics: (n, m) => seen[n]!.push(m) });
    let forwards = 0;
    const logits = d.teacher.logits.bind(d.teacher);
    d.teacher.logits = (batch) => (forwards++, logits(batch));
    const r = await d.fit();
    expect(r).toMatchObject({ iterations: 6, stoppedBy: 'end' });
    expect(forwards).toBe(6);
    // the exported file of each student is its EMA (the SSLMetaArch teacher of that student), not the frozen teacher
    for (const { name, trainer } of d.students) {
      const path = join(out, name, 'teacher_checkpoint.safetensors');
      expect(r.exports[name]).toBe(path);
      const lb = await loadBackbone(path, { config: trainingBackboneConfig(trainer.cfg.student, { imgSize: 32, teacher: true }) });
      const want = [...trainer.model.teacher.backbone.parameters()].map((p) => p.toFloat32Array());
      expect([...lb.model.parameters()].map((p) => p.toFloat32Array())).toEqual(want);
      lb.model.dispose();
    }
    d.dispose();

    const solo = await MultiDistiller.create(T, [b], { data: data(), onMetrics: (_, m) => seen.solo?.push(m) });
    seen.solo = [];
    await solo.fit();
    solo.dispose();
    expect(seen.solo.map((m) => m.total_loss)).toEqual(seen.other!.map((m) => m.total_loss));
    expect(seen.small!.map((m) => m.total_loss)).not.toEqual(seen.other!.map((m) => m.total_loss));
    // the students learn from the teacher: the DINO losses fall over the run
    for (const n of ['small', 'other']) expect(seen[n]!.at(-1)!.dino_global_crops_loss).toBeLessThan(seen[n]![0]!.dino_global_crops_loss);
  });

  test('a stopped distillation resumes every student at the same iteration', { timeout: 240_000 }, async () => {
    const T = await teacher();
    const students = [
      { name: 's1', cfg: await cfg(['train.seed=1']) },
      { name: 's2', cfg: await cfg(['train.seed=2']) },
    ];
    const out = tmp();
    const first = await MultiDistiller.create(T, students, { data: data(), outDir: out, maxIterations: 4 });
    await first.fit();
    first.dispose();
    const again = await MultiDistiller.create(T, students, { data: data(), outDir: out, resume: true });
    expect(again.iteration).toBe(4);
    expect(again.students.map((s) => s.trainer.iteration)).toEqual([4, 4]);
    await again.fit();
    expect(again.iteration).toBe(6);
    again.dispose();
    expect(existsSync(join(out, 's2', 'teacher_checkpoint.safetensors'))).toBe(true);
  });

  test('the official compatibility checks, and "ignore" teachers', async () => {
    const t = await cfg();
    expect(() => checkDistillationPair(t, parse(t, { dino: { head_n_prototypes: 64 } }), 'vits')).toThrow(
      new ConfigError("vits: dino.head_n_prototypes is 64 but the teacher's is 32 (they must match for distillation)"),
    );
    expect(() => checkDistillationPair(t, parse(t, { student: { patch_size: 16 } }), 'vits')).toThrow("vits: student.patch_size is 16 but the teacher's is 8");
    await expect(MultiDistiller.create({ cfg: t, checkpoint: 'ignore' }, [])).rejects.toThrow('distillation needs at least one student');
    const warnings: string[] = [];
    const d = await MultiDistiller.create({ cfg: t, checkpoint: 'ignore' }, [{ name: 'a', cfg: t }], { onWarning: (m) => warnings.push(m) });
    expect(warnings).toEqual(['distillation.checkpoint_path is "ignore": the teacher keeps its seeded initial weights (tests only)']);
    expect(d.students[0]!.trainer.cfg.distillation.enabled).toBe(true);
    d.dispose();
  });

  test('loadDistillationSetup: teacher from distillation.*, students merged as the official setup_multidistillation', async () => {
    const T = await teacher();
    const base = join(tmp(), 'base.json');
    const { writeFileSync } = await import('node:fs');
    const tcfgFile = join(tmp(), 'teacher.json');
    writeFileSync(tcfgFile, JSON.stringify(JSON.parse(JSON.stringify(T.cfg))));
    const s1 = join(tmp(), 's1.json');
    writeFileSync(s1, JSON.stringify({ student: { drop_path_rate: 0.05 }, optim: { epochs: 7 } }));
    writeFileSync(
      base,
      JSON.stringify({
        distillation: { enabled: true, full_cfg_path: tcfgFile, checkpoint_path: T.checkpoint },
        multidistillation: { enabled: true, global_batch_size: 6, students: [{ name: 'one', config_path: s1, ranks_range: [0, 1] }] },
        optim: { epochs: 3 },
      }),
    );
    const setup = await loadDistillationSetup(base, ['dino.koleo_loss_weight=0.3']);
    expect(setup.teacher.checkpoint).toBe(T.checkpoint);
    expect(setup.teacher.cfg.dino.head_hidden_dim).toBe(56);
    expect(setup.students).toHaveLength(1);
    const one = setup.students[0]!.cfg;
    // defaults ← student file ← base ← overrides; batch = global_batch_size on one process
    expect([one.student.drop_path_rate, one.optim.epochs, one.dino.koleo_loss_weight, one.train.batch_size_per_gpu]).toEqual([0.05, 3, 0.3, 6]);
  });
});

function parse(base: SSLConfig, over: Record<string, unknown>): SSLConfig {
  const out = structuredClone(base) as unknown as Record<string, Record<string, unknown>>;
  for (const [k, v] of Object.entries(over)) out[k] = { ...out[k], ...(v as Record<string, unknown>) };
  return out as unknown as SSLConfig;
}
