// Training-step throughput: dinov3-ts vs the official PyTorch step (../shared/peers/cpu_anchor_train.py: SSLMetaArch
// under FSDP2 on one gloo rank, fp32, per-submodule clipping, AdamW with the official groups, EMA) on the same machine,
// same architecture, crops, batch, prototypes and threads. The two take turns in rounds (ours in this process, the
// peer as a child process), so machine noise hits both alike. Ours: Trainer.step on SyntheticBatches (random crops,
// official collate layout), timed per iteration after warm-up; also a per-phase breakdown of one of our iterations.
//
//   npm run build:ts && node dist/bench/train_step.js [--case tiny|vits] [--rounds 3] [--iters 5] [--threads 2]
//     [--python /work/peer/venv/bin/python] [--pythonpath <official checkout>:<omegaconf debs>]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { addonInfo } from '../src/native/binding.js';
import { setNumThreads } from '../src/tensor/device.js';
import { loadSSLConfig } from '../src/train/config.js';
import { SyntheticBatches } from '../src/train/synthetic.js';
import { Trainer } from '../src/train/trainer.js';
import { scheduleValues, trainIteration } from '../src/train/train.js';
import { batchTensors } from '../src/data/batch.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values } = parseArgs({
  options: {
    case: { type: 'string', default: 'tiny' },
    rounds: { type: 'string', default: '3' },
    iters: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    threads: { type: 'string', default: '2' },
    python: { type: 'string', default: '/work/peer/venv/bin/python' },
    pythonpath: { type: 'string', default: '/work/peer/official:/work/peer/debs/usr/lib/python3/dist-packages' },
    peer: { type: 'string', default: join(root, '..', 'shared', 'peers', 'cpu_anchor_train.py') },
    only: { type: 'string', default: 'both' },
    label: { type: 'string', default: `cpu-${cpus().length}core` },
    'param-dtype': { type: 'string', default: 'fp32' },
  },
});

interface Case {
  arch: string;
  embed?: number;
  depth?: number;
  heads?: number;
  patch: number;
  global: number;
  local: number;
  nLocal: number;
  batch: number;
  prototypes: number;
}
const CASES: Record<string, Case> = {
  tiny: { arch: 'vit_custom', embed: 192, depth: 6, heads: 3, patch: 4, global: 32, local: 16, nLocal: 4, batch: 64, prototypes: 1024 },
  vits: { arch: 'vit_small', patch: 16, global: 112, local: 48, nLocal: 4, batch: 8, prototypes: 4096 },
};
const maybe = CASES[values.case!];
if (!maybe) throw new Error(`unknown --case ${values.case} (${Object.keys(CASES).join(', ')})`);
const c: Case = maybe;
const threads = Number(values.threads);
const iters = Number(values.iters);
const warmup = Number(values.warmup);
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

const overrides = [
  `student.arch=${c.arch}`,
  ...(c.embed ? [`student.embed_dim=${c.embed}`, `student.depth=${c.depth}`, `student.num_heads=${c.heads}`] : []),
  `student.patch_size=${c.patch}`,
  `crops.global_crops_size=${c.global}`,
  `crops.local_crops_size=${c.local}`,
  `crops.local_crops_number=${c.nLocal}`,
  `dino.head_n_prototypes=${c.prototypes}`,
  `ibot.head_n_prototypes=${c.prototypes}`,
  `train.batch_size_per_gpu=${c.batch}`,
  `compute_precision.param_dtype=${values['param-dtype']}`,
];

setNumThreads(threads);
const cfg = await loadSSLConfig('ssl_default', [...overrides, 'optim.epochs=100', 'train.OFFICIAL_EPOCH_LENGTH=1000']);
const trainer = await Trainer.create(cfg, {});
const data = new SyntheticBatches({ batchSize: c.batch, globalSize: c.global, localSize: c.local, nLocal: c.nLocal, patchSize: c.patch });

const phases: Record<string, number> = {};
let timedIters = 0;
function ours(n: number, timed = true): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const b = data.batch(trainer.iteration);
    const t0 = performance.now();
    trainIteration(trainer.model, trainer.optimizer, b, {
      iteration: trainer.iteration,
      values: scheduleValues(trainer.schedules, trainer.iteration),
      clipGrad: cfg.optim.clip_grad,
      timings: timed ? phases : undefined,
    });
    trainer.iteration++;
    if (timed) timedIters++;
    out.push((performance.now() - t0) / 1000);
    for (const t of batchTensors(b)) t.dispose();
  }
  return out;
}

function peer(n: number): { s: number[]; result: Record<string, unknown> } {
  const args = [
    values.peer!,
    '--arch',
    c.arch === 'vit_custom' ? 'custom' : c.arch,
    ...(c.embed ? ['--embed-dim', String(c.embed), '--depth', String(c.depth), '--heads', String(c.heads)] : []),
    '--patch-size',
    String(c.patch),
    '--global-size',
    String(c.global),
    '--local-size',
    String(c.local),
    '--n-local',
    String(c.nLocal),
    '--batch',
    String(c.batch),
    '--prototypes',
    String(c.prototypes),
    '--iters',
    String(n),
    '--warmup',
    String(warmup),
    '--threads',
    String(threads),
    '--param-dtype',
    values['param-dtype']!,
  ];
  const r = spawnSync(values.python!, args, { env: { ...process.env, PYTHONPATH: values.pythonpath }, encoding: 'utf8', maxBuffer: 1 << 26 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`peer failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const result = JSON.parse(line.slice(7)) as Record<string, unknown> & { s_per_iter_all: number[] };
  return { s: result.s_per_iter_all, result };
}

const load0 = loadavg();
ours(warmup, false);
const oursS: number[] = [];
const peerS: number[] = [];
let peerResult: Record<string, unknown> = {};
for (let r = 0; r < Number(values.rounds); r++) {
  if (values.only !== 'peer') oursS.push(...ours(iters));
  if (values.only !== 'ours') {
    const p = peer(iters);
    peerS.push(...p.s);
    peerResult = p.result;
  }
}
const load1 = loadavg();
const summary = (s: number[]) =>
  s.length ? { s_per_iter: +median(s).toFixed(4), img_per_s: +(c.batch / median(s)).toFixed(3), all: s.map((x) => +x.toFixed(4)) } : null;
const res = {
  bench: 'train_step',
  case: values.case,
  config: c,
  param_dtype: values['param-dtype'],
  threads,
  ours: summary(oursS),
  official: summary(peerS),
  ratio: oursS.length && peerS.length ? +(median(peerS) / median(oursS)).toFixed(3) : null,
  ours_phase_s_mean: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, +(v / 1000 / Math.max(timedIters, 1)).toFixed(4)])),
  official_meta: {
    torch: peerResult.torch,
    fsdp: peerResult.fsdp,
    param_dtype: peerResult.param_dtype,
    rope_dtype: peerResult.rope_dtype,
    phase_s_median: peerResult.phase_s_median,
  },
  addon: addonInfo,
  loadavg_start: load0.map((x) => +x.toFixed(2)),
  loadavg_end: load1.map((x) => +x.toFixed(2)),
  date: new Date().toISOString(),
};
trainer.dispose();
const text = JSON.stringify(res, null, 1);
process.stdout.write(`${text}\n`);
const dir = join(root, 'bench', 'results');
if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, `train_step-${values.case}-${values['param-dtype']}-${values.label}.json`), `${text}\n`);
