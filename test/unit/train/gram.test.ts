// The gram teacher's life cycle and wiring: load/refresh iterations (also across a resume, with the official
// recount), gram.ckpt loading (official skip of heads and centres), the feature resize against PyTorch's interpolate
// at known sizes, and gram crops from the synthetic batches.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, test } from 'vitest';

import { ConfigError, tensor, TorchRangeError, TorchTypeError } from '../../../src/index.js';
import { loadSSLConfig, type SSLConfig } from '../../../src/train/config.js';
import {
  gramLoadDue,
  gramRefreshDue,
  gramUpdatesDoneBefore,
  loadGramTeacherCheckpoint,
  officialGramUpdatesBefore,
  resizePatchTokens,
} from '../../../src/train/gram.js';
import { SSLMetaArch } from '../../../src/train/ssl_meta_arch.js';
import { SyntheticBatches } from '../../../src/train/synthetic.js';
import { Trainer } from '../../../src/train/trainer.js';
import { FIXTURES } from '../models/helpers.js';
import { tinyOverrides } from './tiny.js';

const TINY = tinyOverrides();
// a separate gram teacher at 2× the global crops: loaded from the EMA teacher before iteration 2, refreshed after
// iterations 3, 5 and 7 ((it + 1) ≥ 4, multiples of 2), no more (max_updates 3)
const GRAM = [
  'gram.use_loss=true',
  'gram.ema_teacher=false',
  'gram.it_load_ema_teacher=2',
  'gram.rep_update=true',
  'gram.update_frequency=2',
  'gram.it_first_update=4',
  'gram.max_updates=3',
  'crops.gram_teacher_crops_size=64',
  'gram.img_level=true',
];
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'dinov3-gram-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const data = () => new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 3, gramTeacherSize: 64 });
const cfg = (extra: string[] = []): Promise<SSLConfig> => loadSSLConfig('ssl_default', [...TINY, ...extra]);

/** Records the gram teacher's loads (before iteration it) and refreshes (after iteration it). */
function spy(t: Trainer): [string, number][] {
  const events: [string, number][] = [];
  const load = t.model.gramLoadEmaTeacher.bind(t.model);
  const upd = t.model.updateGram.bind(t.model);
  t.model.gramLoadEmaTeacher = () => (events.push(['load', t.iteration]), load());
  t.model.updateGram = (m?: number) => (events.push(['update', t.iteration]), upd(m));
  return events;
}

describe('gram teacher schedule', () => {
  test('loads and refreshes at the configured iterations (official do_train conditions)', async () => {
    const c = await cfg(GRAM);
    const loads = Array.from({ length: 12 }, (_, it) => it).filter((it) => gramLoadDue(c, it));
    expect(loads).toEqual([2]);
    const refreshes: number[] = [];
    for (let it = 0, n = 0; it < 12; it++) if (gramRefreshDue(c, it, n)) refreshes.push(it), n++;
    expect(refreshes).toEqual([3, 5, 7]);
    expect([0, 3, 4, 5, 6, 8, 12].map((s) => gramUpdatesDoneBefore(c, s))).toEqual([0, 0, 1, 1, 2, 3, 3]);
    // the official recount on resume agrees where it_first_update is a positive multiple of update_frequency
    expect([4, 5, 6, 7, 8].map((s) => officialGramUpdatesBefore(c, s))).toEqual([1, 1, 2, 2, 3]);
    expect([0, 3].map((s) => officialGramUpdatesBefore(c, s))).toEqual([0, 0]);
    // ... and counts one refresh more than done otherwise (it_first_update 0: ceil((10 + 1) / 5) = 3, done: 2)
    const c0 = await cfg([...GRAM, 'gram.it_first_update=0', 'gram.update_frequency=5']);
    expect(officialGramUpdatesBefore(c0, 10)).toBe(3);
    expect(gramUpdatesDoneBefore(c0, 10)).toBe(2);
    // no gram teacher, no refresh: the EMA teacher as gram teacher
    const ema = await cfg(['gram.use_loss=true', 'gram.ema_teacher=true', 'gram.rep_update=false', 'gram.it_load_ema_teacher=0']);
    expect(gramLoadDue(ema, 0)).toBe(false);
    expect(officialGramUpdatesBefore(ema, 8)).toBe(0);
  });

  test('a trainer loads/refreshes exactly there, straight and across a resume (same events, gram weights, losses)', { timeout: 180_000 }, async () => {
    // as officially, the gram teacher starts from gram.ckpt (here another run's teacher) until the load at iteration 2
    const src = tmp();
    const pre = await Trainer.create(await cfg(['train.seed=5']), { data: data(), outDir: src, maxIterations: 1 });
    await pre.fit();
    pre.dispose();
    const c = await cfg([...GRAM, `gram.ckpt=${src}`]);
    const d1 = tmp();
    const a = await Trainer.create(c, { data: data(), outDir: d1 });
    const ev1 = spy(a);
    const l1: number[] = [];
    const g1: number[] = [];
    await a.fit();
    for (const m of readFileSync(join(d1, 'training_metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((x) => JSON.parse(x) as { total_loss: number; gram_loss: number })) {
      l1.push(m.total_loss);
      g1.push(m.gram_loss);
    }
    const w1 = [...a.model.gramTeacher!.parameters()].map((p) => p.toFloat32Array());
    // after the last refresh (iteration 7) the gram teacher holds the EMA teacher of that moment: not the final one
    a.dispose();
    expect(ev1).toEqual([
      ['load', 2],
      ['update', 3],
      ['update', 5],
      ['update', 7],
    ]);

    const d2 = tmp();
    const b = await Trainer.create(c, { data: data(), outDir: d2, maxIterations: 6 });
    const ev2 = spy(b);
    await b.fit();
    b.dispose();
    const r = await Trainer.create(c, { data: data(), outDir: d2, resume: true });
    expect(r.iteration).toBe(6);
    const ev3 = spy(r);
    await r.fit();
    const w2 = [...r.model.gramTeacher!.parameters()].map((p) => p.toFloat32Array());
    r.dispose();
    expect([...ev2, ...ev3]).toEqual(ev1);
    expect(w2).toEqual(w1);
    const l2 = readFileSync(join(d2, 'training_metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((x) => (JSON.parse(x) as { total_loss: number }).total_loss);
    expect(l2).toEqual(l1);
    // no Gram loss before the load at iteration 2 is possible: the trainer errs rather than use an empty teacher
    expect(g1.slice(2).every((x) => Number.isFinite(x) && x > 0)).toBe(true);
  });

  test('the gram loss before the gram teacher has weights is a clear error', async () => {
    const c = await cfg(GRAM);
    const t = await Trainer.create(c, {});
    const b = data().batch(0);
    expect(() => t.step(b)).toThrow(new ConfigError('the gram teacher has not been initialised: set gram.ckpt or reach gram.it_load_ema_teacher first'));
    for (const x of Object.values(b)) if (typeof x === 'object') x.dispose();
    t.dispose();
  });
});

describe('gram.ckpt', () => {
  test('a run folder: its latest teacher backbone becomes the gram teacher (heads skipped), used from iteration 0', { timeout: 60_000 }, async () => {
    const src = tmp();
    const a = await Trainer.create(await cfg(), { data: data(), outDir: src, maxIterations: 2 });
    await a.fit();
    const teacher = new Map([...a.model.teacher.backbone.stateDict()].map(([k, v]) => [k, v.toFloat32Array()]));
    a.dispose();
    const c = await cfg([...GRAM, `gram.ckpt=${src}`, 'gram.it_load_ema_teacher=-1']);
    const t = await Trainer.create(c, {});
    expect(t.model.gramTeacherInitialized).toBe(true);
    for (const [k, v] of t.model.gramTeacher!.backbone.stateDict()) expect(v.toFloat32Array(), k).toEqual(teacher.get(k));
    // the exported teacher (.safetensors, bare backbone keys) loads the same
    const m = new SSLMetaArch(c);
    await loadGramTeacherCheckpoint(m, join(src, 'teacher_checkpoint.safetensors'));
    for (const [k, v] of m.gramTeacher!.backbone.stateDict()) expect(v.toFloat32Array(), k).toEqual(teacher.get(k));
    m.dispose();
    const b = data().batch(0);
    const met = t.step(b);
    for (const x of Object.values(b)) if (typeof x === 'object') x.dispose();
    expect(met.gram_loss).toBeGreaterThan(0);
    t.dispose();
  });

  test('the official placeholder "ignore" is refused with a clear message', async () => {
    const c = await cfg([...GRAM, 'gram.ckpt=ignore']);
    await expect(Trainer.create(c, {})).rejects.toThrow(
      new ConfigError('gram.ckpt is "ignore": give the path of the gram teacher\'s checkpoint (a run folder, .pth or .safetensors)'),
    );
  });
});

describe('gram teacher features resized to the student grid', () => {
  interface Case {
    n: number;
    ns: number;
    mode: string;
    antialias: boolean;
    x: number[];
    y: number[];
    shape: number[];
    out_shape: number[];
  }
  const { cases } = JSON.parse(readFileSync(`${FIXTURES}gram_resize_io.json`, 'utf8')) as { cases: Case[] };
  for (const c of cases) {
    test(`${c.n}×${c.n} → ${c.ns}×${c.ns} ${c.mode}${c.antialias ? ' antialias' : ''} equals torch.nn.functional.interpolate (1e-6)`, () => {
      using x = tensor(Float32Array.from(c.x), { shape: c.shape });
      using y = resizePatchTokens(x, c.n, c.ns, { mode: c.mode, antialias: c.antialias });
      expect(y.shape).toEqual(c.out_shape);
      const got = y.toFloat32Array();
      let worst = 0;
      c.y.forEach((v, i) => (worst = Math.max(worst, Math.abs(got[i]! - v))));
      expect(worst).toBeLessThanOrEqual(1e-6);
    });
  }
  test('a token count that is not N·N is refused', () => {
    using x = tensor(new Float32Array(2 * 10 * 3), { shape: [2, 10, 3] });
    expect(() => resizePatchTokens(x, 4, 2, { mode: 'bicubic', antialias: false })).toThrow(
      'resizePatchTokens: expected [B, 16, D] tokens for a 4×4 grid, received [2, 10, 3]',
    );
  });
  test('a schedule config without a gram section, or a bad iteration, is a typed error', () => {
    expect(() => gramLoadDue({} as never, 0)).toThrow(
      new ConfigError('gramLoadDue: "cfg" is not a parsed SSLConfig: section "gram" is undefined (build configs with loadSSLConfig/parseConfig)'),
    );
    expect(() => gramRefreshDue(undefined as never, 0, 0)).toThrow(
      new TorchTypeError('gramRefreshDue: expected "cfg" to be a parsed SSLConfig, received undefined', 'ERR_INVALID_ARG'),
    );
    const cfg = {
      gram: { use_loss: false, ema_teacher: false, rep_update: false, it_first_update: 0, update_frequency: 1, max_updates: null, it_load_ema_teacher: -1 },
    };
    expect(() => gramUpdatesDoneBefore(cfg as never, -1)).toThrow(
      new TorchRangeError('gramUpdatesDoneBefore: expected "startIter" to be an integer >= 0, received number -1', 'ERR_INVALID_ARG'),
    );
    // Without a gram teacher there is nothing to count, however large startIter is.
    expect(gramUpdatesDoneBefore(cfg as never, 2 ** 40)).toBe(0);
  });
});

describe('synthetic gram crops', () => {
  test('collated_gram_teacher_crops [2B, 3, S, S], the other crops and masks unchanged by their presence', () => {
    const withGram = data().batch(5);
    const without = new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 3 }).batch(5);
    expect(withGram.collated_gram_teacher_crops!.shape).toEqual([8, 3, 64, 64]);
    expect(without.collated_gram_teacher_crops).toBeUndefined();
    expect(withGram.collated_global_crops.toFloat32Array()).toEqual(without.collated_global_crops.toFloat32Array());
    expect(withGram.collated_masks.toArray()).toEqual(without.collated_masks.toArray());
    for (const b of [withGram, without]) for (const x of Object.values(b)) if (typeof x === 'object') x.dispose();
  });
});
