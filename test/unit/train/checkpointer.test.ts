// Training checkpoints: bit-exact round trips, keep-last-N, incomplete/corrupt checkpoints never picked (also after a
// real SIGKILL of a writing process), teacher export read back by loadBackbone, the run-folder guard.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  AdamW,
  CheckpointError,
  ConfigError,
  DinoVisionTransformer,
  Generator,
  loadBackbone,
  memory,
  rand,
  randn,
  scope,
  tensor,
  type Tensor,
  TorchRangeError,
  TorchTypeError,
} from '../../../src/index.js';
import {
  exportTeacherBackbone,
  generatorStates,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  loadLatestCheckpoint,
  optimizerFromCheckpoint,
  optimizerToCheckpoint,
  prepareRunDir,
  restoreGeneratorStates,
  saveCheckpoint,
  verifyCheckpoint,
} from '../../../src/train/checkpointer.js';
import { Rng, type RngState } from '../../../src/data/rng.js';
import { ensureDist, ROOT } from '../cli/dist.js';

let root: string;
let n = 0;
const runDir = () => join(root, `run${n++}`);
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ckpt-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const bytes = (t: Tensor) => {
  const d = t.data();
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
};
function expectSameTensors(a: ReadonlyMap<string, Tensor>, b: ReadonlyMap<string, Tensor>): void {
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  for (const [k, t] of a) {
    const u = b.get(k)!;
    expect([u.dtype, u.shape], k).toEqual([t.dtype, t.shape]);
    expect(bytes(u).equals(bytes(t)), k).toBe(true);
  }
}
function disposeAll(...ms: ReadonlyMap<string, Tensor>[]): void {
  for (const m of ms) for (const t of m.values()) t.dispose();
}

/** A few tensors of every kind a run holds, deterministic in `seed`. */
function someTensors(seed: number): Map<string, Tensor> {
  const g = new Generator(seed);
  return scope(
    () =>
      new Map<string, Tensor>([
        ['w', randn([5, 7], { generator: g })],
        ['b16', randn([3, 4], { generator: g }).to('bfloat16')],
        ['idx', tensor([1, -2, 2 ** 40], { dtype: 'int64' })],
        ['mask', rand([6], { generator: g }).gt(0.5)],
        ['scalar', tensor(seed + 0.25)],
      ]),
  );
}

describe('save and load', () => {
  test('round trips are bit-exact (float32, bfloat16, int64, bool, 0-d; JSON numbers exactly)', async () => {
    const dir = runDir();
    const live = memory().liveTensors;
    const student = someTensors(1);
    const teacher = someTensors(2);
    const json = {
      iteration: 7,
      lr: 0.1 + 0.2,
      rng: [4294967295, 0, 123456789, 1],
      loader: { epoch: 0, position: 448 },
      tiny: 5e-324,
      config: { a: null, b: 'x' },
    };
    const path = await saveCheckpoint(dir, 7, { tensors: { student, teacher, empty: new Map() }, json });
    expect(path).toBe(join(dir, 'ckpt', '7'));
    expect((await readdir(path)).sort()).toEqual(['empty.safetensors', 'manifest.json', 'state.json', 'student.safetensors', 'teacher.safetensors']);
    const c = await loadCheckpoint(path);
    expect(c.iteration).toBe(7);
    expect(c.json).toEqual(json);
    expect(Object.keys(c.tensors)).toEqual(['student', 'teacher', 'empty']);
    expectSameTensors(student, c.tensors.student!);
    expectSameTensors(teacher, c.tensors.teacher!);
    expect(c.tensors.empty!.size).toBe(0);
    c.dispose();
    disposeAll(student, teacher);
    expect(memory().liveTensors).toBe(live);
  });

  test('the snapshot is taken when called: changing a tensor during the write does not change the file', async () => {
    const dir = runDir();
    const t = tensor([1, 2, 3]);
    const p = saveCheckpoint(dir, 0, { tensors: { s: { t } }, json: null });
    t.mul_(10);
    const c = await loadCheckpoint(await p);
    expect(c.tensors.s!.get('t')!.toArray()).toEqual([1, 2, 3]);
    c.dispose();
    t.dispose();
  });

  test('optimizer state (per-parameter exp_avg, exp_avg_sq, step) and libtorch generator states round trip exactly', async () => {
    const dir = runDir();
    const p1 = tensor([
      [0.5, -1],
      [2, 3],
    ]).requiresGrad_(true);
    const p2 = tensor([0.1, 0.2, 0.3]).requiresGrad_(true);
    const opt = new AdamW(
      [
        { params: [p1], lrMult: 0.5, isLastLayer: false },
        { params: [p2], weightDecay: 0 },
      ],
      { lr: 0.01 },
    );
    for (let i = 0; i < 3; i++) {
      p1.mul(p1).sum().add(p2.mul(3).sum()).backward();
      opt.step();
      opt.zeroGrad();
    }
    const gen = new Generator(9);
    gen.setState(
      (() => {
        const x = rand([3], { generator: gen });
        x.dispose();
        return gen.getState();
      })(),
    );
    const rng = generatorStates({ crops: gen });
    const o = optimizerToCheckpoint(opt.stateDict());
    const jsRng = Rng.derive(0, 5, 7);
    jsRng.nextU32();
    await saveCheckpoint(dir, 2, { tensors: { optimizer: o.tensors, rng }, json: { optimizer: o.json, dataRng: jsRng.state() } });
    const jsExpected = [jsRng.nextU32(), jsRng.nextU32()];
    disposeAll(rng);

    const expectedDraw = rand([4], { generator: gen }).toArray();
    const expectedGlobal = rand([2]).toArray();
    const c = (await loadLatestCheckpoint(dir))!;
    restoreGeneratorStates(c.tensors.rng!, { crops: gen });
    expect(rand([4], { generator: gen }).toArray()).toEqual(expectedDraw);
    expect(rand([2]).toArray()).toEqual(expectedGlobal);
    // Rng.state() can hold negative (signed 32-bit) words that Rng.fromState refuses: store them unsigned.
    const jsRestored = Rng.fromState((c.json as { dataRng: RngState }).dataRng.map((w) => w >>> 0) as unknown as RngState);
    expect([jsRestored.nextU32(), jsRestored.nextU32()]).toEqual(jsExpected);

    const fresh = new AdamW(
      [
        { params: [p1], lrMult: 0.5, isLastLayer: false },
        { params: [p2], weightDecay: 0 },
      ],
      { lr: 0.01 },
    );
    const sd = optimizerFromCheckpoint(c.tensors.optimizer!, (c.json as { optimizer: Parameters<typeof optimizerFromCheckpoint>[1] }).optimizer);
    fresh.loadStateDict(sd);
    const a = opt.stateDict();
    const b = fresh.stateDict();
    expect(b.step).toBe(3);
    expect(b.paramGroups).toEqual(a.paramGroups);
    expect(b.paramGroups[0]).toMatchObject({ lrMult: 0.5, isLastLayer: false, steps: [3] });
    a.state.forEach((s, gi) =>
      s.expAvg.forEach((t, i) => {
        expect(bytes(b.state[gi]!.expAvg[i]!).equals(bytes(t))).toBe(true);
        expect(bytes(b.state[gi]!.expAvgSq[i]!).equals(bytes(s.expAvgSq[i]!))).toBe(true);
      }),
    );
    c.dispose();
    opt.dispose();
    fresh.dispose();
  });

  test('bad input: group names, iteration, JSON that cannot be stored', async () => {
    const dir = runDir();
    await expect(saveCheckpoint(dir, 0, { tensors: { 'a/b': {} }, json: null })).rejects.toThrow(
      new CheckpointError('saveCheckpoint: invalid tensor group name "a/b" (letters, digits, _ - . ; not "state" or "manifest")'),
    );
    await expect(saveCheckpoint(dir, 1.5, { tensors: {}, json: null })).rejects.toThrow(
      'saveCheckpoint: iteration must be a non-negative integer, received 1.5',
    );
    await expect(saveCheckpoint(dir, 0, { tensors: {}, json: { sched: { lr: [0.1, Number.NaN] } } })).rejects.toThrow(
      'saveCheckpoint: json.sched.lr[1] is NaN, which JSON cannot hold exactly',
    );
    await expect(saveCheckpoint(dir, 0, { tensors: {}, json: { m: new Map() } })).rejects.toThrow(
      'saveCheckpoint: json.m is a Map object, which JSON cannot hold exactly',
    );
    await expect(saveCheckpoint(dir, 0, { tensors: {}, json: { u: undefined } })).rejects.toThrow(
      'saveCheckpoint: json.u is undefined, which JSON cannot hold exactly',
    );
    // Arguments of the wrong kind are typed errors naming the function and the argument (not a TypeError from fs).
    await expect(saveCheckpoint(dir, 0, null as never)).rejects.toThrow(
      new TorchTypeError('saveCheckpoint: expected "payload" to be an object, received null', 'ERR_INVALID_ARG'),
    );
    await expect(latestCheckpoint(42 as never)).rejects.toThrow(
      new TorchTypeError('latestCheckpoint: expected "runDir" to be a non-empty string, received number 42', 'ERR_INVALID_ARG'),
    );
    await expect(loadCheckpoint('')).rejects.toThrow(
      new TorchRangeError('loadCheckpoint: expected "path" to be a non-empty string, received string ""', 'ERR_INVALID_ARG'),
    );
    expect(() => optimizerFromCheckpoint({} as never, {} as never)).toThrow(
      new TorchTypeError('optimizerFromCheckpoint: expected "tensors" to be a Map, received object', 'ERR_INVALID_ARG'),
    );
    expect(await listCheckpoints(dir)).toEqual([]);
  });
});

describe('keep-last-N and picking the latest complete checkpoint', () => {
  test('keepLast prunes the oldest; keepEvery keeps a hard-linked _keep copy; saving an iteration again replaces it', async () => {
    const dir = runDir();
    for (const it of [9, 19, 29, 39, 49]) await saveCheckpoint(dir, it, { tensors: { s: { x: tensor([it]) } }, json: { it } }, { keepLast: 2, keepEvery: 20 });
    expect((await listCheckpoints(dir)).map((c) => c.iteration)).toEqual([39, 49]);
    expect((await readdir(join(dir, 'ckpt'))).sort()).toEqual(['19_keep', '39', '39_keep', '49']);
    await verifyCheckpoint(join(dir, 'ckpt', '19_keep'));
    await saveCheckpoint(dir, 49, { tensors: { s: { x: tensor([-1]) } }, json: { it: -1 } });
    const c = (await loadLatestCheckpoint(dir))!;
    expect([c.iteration, c.json, c.tensors.s!.get('x')!.toArray()]).toEqual([49, { it: -1 }, [-1]]);
    c.dispose();
    expect((await readdir(join(dir, 'ckpt'))).filter((e) => e.startsWith('.tmp'))).toEqual([]);
  });

  test('a checkpoint a dead writer had moved aside (two-rename fallback, killed between them) is put back by the next save', async () => {
    const dir = runDir();
    const save = (it: number, v: number) => saveCheckpoint(dir, it, { tensors: { s: { x: tensor([v]) } }, json: { v } });
    await save(1, 1);
    await save(2, 2);
    const ck = join(dir, 'ckpt');
    // 1 was moved aside and nothing took its place; 2 was moved aside after its replacement was renamed in.
    await rename(join(ck, '1'), join(ck, '.tmp-999999999-old-1-0123456789ab'));
    await mkdir(join(ck, '.tmp-999999999-old-2-0123456789ab'));
    await save(3, 3);
    expect((await readdir(ck)).sort()).toEqual(['1', '2', '3']);
    const c = await loadCheckpoint(join(ck, '1'));
    expect([c.json, c.tensors.s!.get('x')!.toArray()]).toEqual([{ v: 1 }, [1]]);
    c.dispose();
    await verifyCheckpoint(join(ck, '2'));
  });

  test('a checkpoint cut short (no manifest, truncated, altered, a file missing, leftover temporary folder) is never picked', async () => {
    const dir = runDir();
    const save = (it: number) => saveCheckpoint(dir, it, { tensors: { s: { x: tensor([it, it]) } }, json: { it } });
    await save(1);
    // 2: killed before its manifest was written (simulated: manifest removed).
    await rm(join(await save(2), 'manifest.json'));
    // 3: a tensor file truncated.
    const p3 = await save(3);
    await truncate(join(p3, 's.safetensors'), 20);
    // 4: same size, one byte altered.
    const p4 = await save(4);
    const buf = await readFile(join(p4, 's.safetensors'));
    buf[buf.length - 1]! ^= 1;
    await writeFile(join(p4, 's.safetensors'), buf);
    // 5: state.json missing.
    await rm(join(await save(5), 'state.json'));
    // 6: state.json appended to.
    await appendFile(join(await save(6), 'state.json'), ' ');
    // A temporary folder of a write in progress (a live pid: ours) named like a newer checkpoint's.
    await mkdir(join(dir, 'ckpt', `.tmp-${process.pid}-abc`));
    await writeFile(join(dir, 'ckpt', `.tmp-${process.pid}-abc`, 'manifest.json'), '{}');

    const skipped: string[] = [];
    expect(await latestCheckpoint(dir, { onSkip: (p, e) => skipped.push(`${p.split('/').pop()}: ${e.message.replace(dir, '<run>')}`) })).toBe(
      join(dir, 'ckpt', '1'),
    );
    expect(skipped.map((s) => s.replace(/[0-9a-f]{64}/g, '<sha>'))).toEqual([
      '6: <run>/ckpt/6/state.json: 33 bytes, the manifest says 32 (truncated or altered)',
      '5: <run>/ckpt/5/state.json: missing (incomplete checkpoint)',
      "4: <run>/ckpt/4/s.safetensors: SHA-256 <sha> differs from the manifest's <sha> (corrupt)",
      '3: <run>/ckpt/3/s.safetensors: 20 bytes, the manifest says 120 (truncated or altered)',
      '2: <run>/ckpt/2: incomplete checkpoint (no manifest.json)',
    ]);
    // Sizes alone catch all but the altered byte.
    expect(await latestCheckpoint(dir, { checksums: false })).toBe(join(dir, 'ckpt', '4'));
    const c = (await loadLatestCheckpoint(dir))!;
    expect(c.json).toEqual({ it: 1 });
    c.dispose();
    await expect(loadCheckpoint(join(dir, 'ckpt', '3'))).rejects.toThrow(CheckpointError);
    expect(await latestCheckpoint(runDir())).toBeNull();
  });

  test('a real SIGKILL of a process writing checkpoints never leaves one that is picked', { timeout: 300_000 }, async () => {
    ensureDist();
    const dir = runDir();
    // The child saves 3 groups of 2 MiB each per checkpoint; the content of checkpoint i is a function of i.
    const script = `
      import { saveCheckpoint, latestCheckpoint } from ${JSON.stringify(join(ROOT, 'dist/src/train/checkpointer.js'))};
      import { full } from ${JSON.stringify(join(ROOT, 'dist/src/tensor/creation.js'))};
      const dir = process.argv[1];
      const last = await latestCheckpoint(dir);
      let it = last === null ? 0 : Number(last.split('/').pop()) + 1;
      const groups = (i) => Object.fromEntries(['student', 'teacher', 'optimizer'].map((g, k) => [g, { w: full([512, 1024], i + k) }]));
      for (;; it++) {
        const tensors = groups(it);
        process.stdout.write('writing ' + it + '\\n');
        await saveCheckpoint(dir, it, { tensors, json: { it } }, { keepLast: 2 });
        process.stdout.write('saved ' + it + '\\n');
        for (const g of Object.values(tensors)) g.w.dispose();
      }`;
    let midWrite = 0;
    let lastSaved = -1;
    // Four kills at fixed delays after a write began, then (until one has landed mid-write, at most 8 more) kills as
    // soon as the write's temporary folder appears: fixed delays alone can all miss the write on a loaded machine.
    for (let round = 0; round < 4 || (midWrite === 0 && round < 12); round++) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const killedAt = await new Promise<number>((resolve, reject) => {
        let writes = 0;
        let buffered = '';
        child.stdout.on('data', (d: Buffer) => {
          buffered += d.toString();
          const lines = buffered.split('\n');
          buffered = lines.pop()!;
          for (const l of lines) {
            const [what, it] = l.split(' ');
            if (what === 'saved') lastSaved = Number(it);
            // Kill during the third write of this round, after a delay that varies per round.
            if (what !== 'writing' || ++writes !== 3) continue;
            if (round < 4) setTimeout(() => child.kill('SIGKILL'), [0, 5, 20, 60][round]);
            else {
              const poll = setInterval(() => {
                if (!readdirSync(join(dir, 'ckpt')).some((e) => e.startsWith('.tmp-'))) return;
                clearInterval(poll);
                child.kill('SIGKILL');
              }, 1);
              child.once('exit', () => clearInterval(poll));
            }
          }
        });
        child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve(lastSaved) : reject(new Error(`child exited ${code}: ${err}`))));
      });
      const entries = await readdir(join(dir, 'ckpt'));
      if (entries.some((e) => e.startsWith('.tmp-'))) midWrite++;
      const latest = await loadLatestCheckpoint(dir);
      expect(latest).not.toBeNull();
      // The newest complete checkpoint is the last one reported saved, or the one whose rename landed just before the kill.
      expect([killedAt, killedAt + 1]).toContain(latest!.iteration);
      expect(latest!.json).toEqual({ it: latest!.iteration });
      ['student', 'teacher', 'optimizer'].forEach((g, k) => {
        const w = latest!.tensors[g]!.get('w')!;
        expect(w.shape).toEqual([512, 1024]);
        const d = w.data() as Float32Array;
        expect(d.every((v) => v === latest!.iteration + k)).toBe(true);
      });
      lastSaved = latest!.iteration;
      latest!.dispose();
    }
    // At least one kill landed while a checkpoint was being written (its temporary folder was left behind) …
    expect(midWrite).toBeGreaterThan(0);
    // … and the next writer removes such leftovers of dead processes.
    const { saveCheckpoint: save } = await import('../../../src/train/checkpointer.js');
    await save(dir, 1000, { tensors: {}, json: null });
    expect((await readdir(join(dir, 'ckpt'))).filter((e) => e.startsWith('.tmp-'))).toEqual([]);
  });
});

describe('teacher export and run folders', () => {
  test('exportTeacherBackbone writes a .safetensors that loadBackbone reads back bit-exactly', async () => {
    const dir = runDir();
    const cfg = {
      embed_dim: 64,
      depth: 2,
      num_heads: 2,
      patch_size: 4,
      n_storage_tokens: 4,
      layerscale_init: 1e-5,
      mask_k_bias: true,
      pos_embed_rope_dtype: 'fp32' as const,
    };
    const teacher = new DinoVisionTransformer(cfg, { generator: new Generator(3) });
    // The whole teacher's state dict: backbone.* plus head keys, which are dropped.
    const sd = new Map<string, Tensor>([...teacher.stateDict('backbone')]);
    const head = tensor([1, 2]);
    sd.set('dino_head.last_layer.weight', head);
    const path = await exportTeacherBackbone(dir, sd, { iteration: 99 });
    expect(path).toBe(join(dir, 'eval', '99', 'teacher_checkpoint.safetensors'));
    const { model, report } = await loadBackbone(path, { config: cfg });
    expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
    expectSameTensors(teacher.stateDict(), model.stateDict());
    // Without a config, the architecture is inferred from the tensors.
    const inferred = await loadBackbone(await exportTeacherBackbone(dir, teacher.stateDict()));
    expect(inferred.config).toMatchObject({ embed_dim: 64, depth: 2, num_heads: 2, patch_size: 4, n_storage_tokens: 4 });
    expectSameTensors(teacher.stateDict(), inferred.model.stateDict());
    await expect(exportTeacherBackbone(dir, new Map())).rejects.toThrow('exportTeacherBackbone: the state dict holds no tensors');
    for (const m of [teacher, model, inferred.model]) m.dispose();
    head.dispose();
  });

  test('a folder that holds another run is refused unless resume', async () => {
    const dir = runDir();
    expect(await prepareRunDir(dir)).toEqual({ resumed: false, latest: null });
    expect(JSON.parse(await readFile(join(dir, 'run.json'), 'utf8'))).toMatchObject({ format: 'dinov3-ts/run', pid: process.pid });
    await expect(prepareRunDir(dir)).rejects.toThrow(
      new ConfigError(`${dir} already holds a run (run.json): resume it (--resume) or choose another output folder`),
    );
    expect(await prepareRunDir(dir, { resume: true })).toEqual({ resumed: true, latest: null });
    await saveCheckpoint(dir, 4, { tensors: {}, json: null });
    expect(await prepareRunDir(dir, { resume: true })).toEqual({ resumed: true, latest: join(dir, 'ckpt', '4') });
    // A run written by another tool (config.yaml, ckpt/) counts too; an empty or unrelated folder is claimed.
    const other = runDir();
    await mkdir(join(other, 'ckpt'), { recursive: true });
    await writeFile(join(other, 'config.yaml'), 'optim: {}\n');
    await expect(prepareRunDir(other)).rejects.toThrow(
      `${other} already holds a run (config.yaml, ckpt): resume it (--resume) or choose another output folder`,
    );
    const unrelated = runDir();
    await mkdir(unrelated);
    await writeFile(join(unrelated, 'notes.txt'), 'x');
    expect(await prepareRunDir(unrelated)).toEqual({ resumed: false, latest: null });
    await writeFile(join(root, 'afile'), 'x');
    await expect(prepareRunDir(join(root, 'afile'))).rejects.toThrow(`${join(root, 'afile')}: the run folder is a file`);
  });
});
