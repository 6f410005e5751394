// `dinov3 train` end to end (compiled CLI in a child process): trains on a folder of real photos that also holds
// corrupt, empty and non-image files (reported, the rest is used), refuses a run folder holding another run unless
// --resume, resumes, and reports config errors with exact messages.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, test } from 'vitest';

import { CHELSEA, COFFEE, EXIF6 } from '../features/helpers.js';
import { ensureDist, ROOT } from './dist.js';

const tmp = mkdtempSync(join(tmpdir(), 'dinov3-train-cli-'));
const PHOTOS = join(tmp, 'photos');
let cli: string;
beforeAll(() => {
  cli = ensureDist();
  mkdirSync(PHOTOS);
  copyFileSync(CHELSEA, join(PHOTOS, 'chelsea.jpg'));
  copyFileSync(COFFEE, join(PHOTOS, 'coffee.jpg'));
  copyFileSync(EXIF6, join(PHOTOS, 'rotated.jpg'));
  writeFileSync(join(PHOTOS, 'broken.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
  writeFileSync(join(PHOTOS, 'empty.png'), Buffer.alloc(0));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const TINY = [
  'student.arch=vit_test',
  'student.patch_size=16',
  'student.n_storage_tokens=2',
  'crops.global_crops_size=64',
  'crops.local_crops_size=32',
  'crops.local_crops_number=2',
  'dino.head_n_prototypes=32',
  'ibot.head_n_prototypes=32',
  'train.batch_size_per_gpu=2',
  'compute_precision.param_dtype=fp32',
  'optim.epochs=1',
  'optim.warmup_epochs=0',
  'train.OFFICIAL_EPOCH_LENGTH=4',
  'teacher.warmup_teacher_temp_epochs=0',
  'checkpointing.period=2',
];
function dinov3(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NODE_NO_WARNINGS: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('trains on a folder of photos, skipping and reporting the bad files; refuses a used run folder; resumes', { timeout: 300_000 }, () => {
  const out = join(tmp, 'run');
  let r = dinov3('train', '--config', 'ssl_default', '--data', PHOTOS, '--out', out, '--max-iterations', '2', '--workers', '1', ...TINY);
  expect(r.stderr, r.stderr).toMatch(/warning: skipped .*broken\.jpg: /);
  expect(r.stderr).toMatch(/warning: skipped .*empty\.png: /);
  expect(r.code, r.stderr).toBe(0);
  const res = JSON.parse(r.stdout) as { iterations: number; stoppedBy: string };
  expect(res).toMatchObject({ iterations: 2, stoppedBy: 'end' });
  for (const f of ['config.yaml', 'training_metrics.jsonl', 'teacher_checkpoint.safetensors', 'ckpt/1/manifest.json'])
    expect(existsSync(join(out, f)), f).toBe(true);

  r = dinov3('train', '--config', 'ssl_default', '--data', PHOTOS, '--out', out, '--max-iterations', '4', ...TINY);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^error: .*already holds a run/);

  r = dinov3('train', '--config', 'ssl_default', '--data', PHOTOS, '--out', out, '--max-iterations', '4', '--resume', ...TINY);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toContain('resuming at iteration 2');
  expect(JSON.parse(r.stdout)).toMatchObject({ iterations: 4 });
});

test('config errors: unknown key with a suggestion, wrong type with its path, unknown preset', () => {
  const out = join(tmp, 'never');
  let r = dinov3('train', '--config', 'ssl_default', '--data', 'synthetic', '--out', out, 'optim.lrr=1e-3');
  expect(r.code).toBe(1);
  expect(r.stderr).toBe('error: ✖ Unrecognized key: "lrr" (did you mean "lr"?)\n    → at optim\n');
  r = dinov3('train', '--config', 'ssl_default', '--data', 'synthetic', '--out', out, 'optim.lr=fast');
  expect(r.code).toBe(1);
  expect(r.stderr).toBe('error: ✖ Invalid input: expected number, received string\n    → at optim.lr\n');
  r = dinov3('train', '--config', 'cpu_tiny_fmnst', '--data', 'synthetic', '--out', out);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^error: unknown SSL config preset "cpu_tiny_fmnst" \(did you mean "cpu_tiny_fmnist"\?\); known: ssl_default, /);
  expect(existsSync(out)).toBe(false);
});

// CUDA runs are checked on a GPU (test/cuda); here, a CUDA device on a CPU build is refused before anything is written.
test('--device: a CUDA device this build cannot use, and a device that does not exist', () => {
  const out = join(tmp, 'never-cuda');
  const probe = 'import("./dist/src/index.js").then((m) => console.log(JSON.stringify({ ...m.addonInfo, gpu: m.cuda.isAvailable() })))';
  const { torchVersion, cudaCompiled, gpu } = JSON.parse(spawnSync(process.execPath, ['-e', probe], { cwd: ROOT, encoding: 'utf8' }).stdout);
  let r = dinov3('train', '--config', 'ssl_default', '--data', 'synthetic', '--out', out, '--device', 'cuda', ...TINY);
  if (!gpu) {
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `error: train: --device cuda: CUDA is not available (libtorch ${torchVersion}, ${cudaCompiled ? 'no GPU found' : 'built without CUDA'})\n`,
    );
    expect(existsSync(out)).toBe(false);
  }
  r = dinov3('train', '--config', 'ssl_default', '--data', 'synthetic', '--out', out, '--device', 'gpu');
  expect(r.code).toBe(1);
  expect(r.stderr).toBe("error: option '--device <device>' argument 'gpu' is invalid. expected cpu, cuda or cuda:<index>.\n");
});
